"""The operator control plane: approvals and operator questions, spawning (one-shot and
draft + commit), config changes by commit, lifecycle, per-agent models, scheduled prompts.

Decisions live in the Approvals actor (hive.actors.approvals) and the Agent actors; this
package is their IO side: agent-socket ops (``agent_ops``), admin verbs (``admin_verbs``),
git (``gitrepo``), and the plug-in that registers them with the daemon (``plugin``).
"""
