"""hive.ui: the operator's dashboard, served inside hive-supervisor (see docs/dashboard.md).

Importing ``hive.ui.server`` (listed in hive.extensions.MODULES) registers the daemon hooks
that serve it; ``hive.ui.app.create_app`` builds the QuartTrio app itself.
"""
