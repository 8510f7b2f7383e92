"""hive.ui: the operator's dashboard, served inside hive-supervisor (see docs/dashboard.md).

``hive.daemon.run_hive`` serves it (``hive.ui.server.start_dashboard``);
``hive.ui.app.create_app`` builds the QuartTrio app itself.
"""
