# services.hive: the hive supervisor and its agents, declared in Nix.
#
#   services.hive = {
#     enable = true;
#     agents.manager = { };
#     agents.bob = {
#       parent = "manager";
#       allowedRecipients = [ "manager" ];
#       bashAllow = [ "git *" "nix build *" ];
#       packages = [ pkgs.git pkgs.ripgrep ];
#     };
#   };
#
# renders /etc/hive/hive.toml (the schema of hive/config.py), runs hive-supervisor as a
# watched notify service, and declares one NixOS container h-<name> per agent whose sandbox
# is "nspawn", with uid 0 inside mapped to the agent's own unprivileged uid block.
#
# The package needs no wrapping for its agents: hive starts its helpers on the supervisor's
# interpreter (the scripted agent with PYTHONPATH set to hive's store paths; the MCP relay,
# hive-mcp, by path, standard library only), which bwrap and every container see. tests/test_nix.py evaluates this module with nixpkgs' own
# lib.evalModules (docs/deploy.md says what is proven and how to reproduce it).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    literalExpression
    mkEnableOption
    mkIf
    mkOption
    types
    ;
  hiveLib = import ./lib.nix;
  cfg = config.services.hive;

  stateDir = "/var/lib/hive";
  runDir = "/run/hive";

  # claude-code is unfree. Admitting exactly that package, in an import of nixpkgs of our
  # own (and in each agent container's nixpkgs), means the operator sets nothing and
  # nothing else unfree slips in.
  isClaude = pkg: (pkg.pname or (builtins.parseDrvName pkg.name).name) == "claude-code";
  claudeFromNixpkgs =
    (import pkgs.path {
      inherit (pkgs.stdenv.hostPlatform) system;
      config.allowUnfreePredicate = isClaude;
    }).claude-code;

  # The first host uid of a 65536-uid block: never 0, which would make a container's root
  # the host's (hive refuses such a container at its first turn; this refuses the build).
  uidBlockStart =
    types.addCheck types.ints.positive (u: lib.mod u hiveLib.uidBlock == 0)
    // {
      name = "uidBlockStart";
      description = "positive multiple of ${toString hiveLib.uidBlock}";
    };

  mcpServerModule = {
    options = {
      command = mkOption {
        type = types.str;
        example = literalExpression ''"''${pkgs.my-tools}/bin/my-mcp-server"'';
        description = "The server's executable (stdio MCP).";
      };
      args = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      env = mkOption {
        type = types.attrsOf types.str;
        default = { };
      };
      allowedTools = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Tools of this server the agent may call; empty allows all of them.";
      };
      shared = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Whether agents declaring this same server (command, args and env) may share one
          process of it (the MCP pool). Set false for a server that keeps per-client state.
        '';
      };
    };
  };

  agentModule =
    { name, ... }:
    {
      options = {
        name = mkOption {
          type = types.str;
          default = name;
          description = "The agent's name (the attribute name).";
        };
        runtime = mkOption {
          type = types.enum [
            "claude"
            "scripted"
          ];
          default = "claude";
        };
        model = mkOption {
          type = types.str;
          default = "claude-sonnet-4-5";
        };
        parent = mkOption {
          type = types.str;
          default = "";
          description = "The agent above this one in the topology tree (empty: top).";
        };
        sandbox = mkOption {
          type = types.nullOr (
            types.enum [
              "process"
              "bwrap"
              "nspawn"
            ]
          );
          default = null;
          description = "Overrides services.hive.defaultSandbox for this agent.";
        };
        network = mkOption {
          type = types.bool;
          default = true;
          description = "Whether the agent's sandbox has the host's network (else only lo).";
        };
        persistent = mkOption {
          type = types.bool;
          default = true;
          description = "One resident claude process for many turns (hive's default); false: one per turn.";
        };
        allowedRecipients = mkOption {
          type = types.nullOr (types.listOf types.str);
          default = null;
          example = [ "manager" ];
          description = "Agents this one may send to; null: anyone. The manager may always.";
        };
        allowedTools = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
        bashAllow = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [
            "git *"
            "nix build *"
          ];
          description = "Bash command patterns, as in claude's --allowedTools Bash(...).";
        };
        mcpServers = mkOption {
          type = types.attrsOf (types.submodule mcpServerModule);
          default = { };
        };
        packages = mkOption {
          type = types.listOf types.package;
          default = [ ];
          description = ''
            Packages whose bin/ comes first on PATH in every process of the agent's sandbox
            (its turns, its terminal), whatever the sandbox; also installed in its container.
          '';
        };
        prompt = mkOption {
          type = types.lines;
          default = "";
        };
        env = mkOption {
          type = types.attrsOf types.str;
          default = { };
        };
        uid = mkOption {
          type = types.nullOr uidBlockStart;
          default = null;
          description = ''
            First host uid of the agent's container (uid 0 inside). Default:
            uidBase + 65536 * (12 bits of sha256(name)); set it when two agents collide.
          '';
        };
        extraConfig = mkOption {
          type = types.attrsOf types.anything;
          default = { };
          description = "Further [[agent]] keys of hive.toml, verbatim.";
        };
      };
    };

  agents = map (n: cfg.agents.${n}) (builtins.attrNames cfg.agents);
  sandboxOf = a: if a.sandbox == null then cfg.defaultSandbox else a.sandbox;
  nspawnAgents = builtins.filter (a: sandboxOf a == "nspawn") agents;
  agentUid = a: if a.uid == null then hiveLib.agentUid cfg.uidBase a.name else a.uid;

  # The [hive] table of hive.toml. Options for another part of hive (e.g. a
  # services.hive.federation group) add their keys here, next to these.
  hiveTable = {
    state_dir = stateDir;
    run_dir = runDir;
    admin_group = cfg.adminGroup;
    dashboard = cfg.dashboard.enable;
    dashboard_host = cfg.dashboard.host;
    dashboard_port = cfg.dashboard.port;
    claude_bin = if cfg.claudePackage == null then "claude" else "${cfg.claudePackage}/bin/claude";
    operator_sandboxes = cfg.operatorSandboxes;
  }
  // cfg.settings;
  hiveTomlText =
    hiveLib.toHiveToml {
      hive = hiveTable;
      agents = map (hiveLib.agentTable { inherit (cfg) defaultSandbox; }) agents;
    }
    + federationToml;

  # --- services.hive.federation: the [federation] table (docs/federation.md) -------------
  # Self-contained: its options are federationOptions below, its TOML only this. Secrets
  # are files read by the supervisor at start (passwordFile, credsFile, nkeySeedFile), so
  # none of them lands in the world-readable store.
  fed = cfg.federation;
  tomlLines =
    attrs:
    builtins.concatStringsSep "" (
      map (k: "${builtins.toJSON k} = ${builtins.toJSON attrs.${k}}\n") (
        builtins.filter (k: attrs.${k} != null) (builtins.attrNames attrs)
      )
    );
  federationToml =
    if !fed.enable then
      ""
    else
      "\n[federation]\n"
      + tomlLines {
        inherit (fed) name replicas operators manager;
        nats_url = fed.natsUrls;
        user = fed.user;
        password_file = fed.passwordFile;
        creds = fed.credsFile;
        nkey_seed = fed.nkeySeedFile;
        tls_ca = fed.tls.ca;
        tls_cert = fed.tls.cert;
        tls_key = fed.tls.key;
      }
      + "\n[federation.accept]\n"
      + tomlLines fed.accept;
  federationAssertions = [
    {
      assertion = !fed.enable || fed.name != "";
      message = "services.hive.federation.name: set this hive's name (e.g. \"alpha\").";
    }
  ];
  federationOptions = {
    enable = mkEnableOption "federation of this hive with others over NATS JetStream";
    name = mkOption {
      type = types.str;
      default = "";
      example = "alpha";
      description = "This hive's name in the federation (agent-name rules); required.";
    };
    natsUrls = mkOption {
      type = types.listOf types.str;
      default = [ "nats://127.0.0.1:4222" ];
      description = "The NATS servers (every node of a cluster).";
    };
    user = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "This hive's NATS user (its permissions: docs/federation.md).";
    };
    passwordFile = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "A file holding the NATS user's password (read at start).";
    };
    credsFile = mkOption {
      type = types.nullOr types.str;
      default = null;
    };
    nkeySeedFile = mkOption {
      type = types.nullOr types.str;
      default = null;
    };
    tls = {
      ca = mkOption {
        type = types.nullOr types.str;
        default = null;
      };
      cert = mkOption {
        type = types.nullOr types.str;
        default = null;
      };
      key = mkOption {
        type = types.nullOr types.str;
        default = null;
      };
    };
    replicas = mkOption {
      type = types.int;
      default = 1;
      description = "Replicas of this hive's inbound stream (3 on a three-node cluster).";
    };
    accept = mkOption {
      type = types.attrsOf (types.listOf types.str);
      default = { };
      example = {
        "*" = [ "*@beta" ];
        bob = [ "carol@gamma" ];
      };
      description = "Which remote agents (agent@hive) may write to which local agent.";
    };
    operators = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Hives whose operators may act on this hive's agents.";
    };
    manager = mkOption {
      type = types.str;
      default = "";
      example = "manager@beta";
      description = ''
        Where crash notices go when the manager is on another hive; that hive must
        accept "system@<this hive>" for the manager in its federation.accept.
      '';
    };
  };
  hiveToml = pkgs.writeText "hive.toml" hiveTomlText;

  command = [
    "${cfg.package}/bin/hive-supervisor"
    "--config"
    "/etc/hive/hive.toml"
    "--state-dir"
    stateDir
    "--run-dir"
    runDir
  ];

  sharedUids =
    let
      byUid = builtins.groupBy (a: toString (agentUid a)) nspawnAgents;
    in
    builtins.filter (group: builtins.length group > 1) (builtins.attrValues byUid);

  container = a: {
    name = hiveLib.containerName a.name;
    value = {
      autoStart = true;
      privateUsers = agentUid a;
      privateNetwork = !a.network;
      bindMounts = {
        "${stateDir}/agents/${a.name}" = {
          hostPath = "${stateDir}/agents/${a.name}";
          isReadOnly = false;
        };
        # The directory, not the socket file: the supervisor re-creates its sockets when it
        # restarts, and a bind of the old file would point at a dead socket. Every socket is
        # 0600 and owned by its own agent's uid, so the others are visible but unreachable.
        "${runDir}/agents" = {
          hostPath = "${runDir}/agents";
          isReadOnly = true;
        };
      };
      config =
        { pkgs, ... }:
        {
          nixpkgs.config.allowUnfreePredicate = isClaude;
          environment.systemPackages =
            [ cfg.package ] ++ lib.optional (a.runtime == "claude") pkgs.claude-code ++ a.packages;
          system.stateVersion = config.system.stateVersion;
        };
    };
  };
in
{
  options.services.hive = {
    enable = mkEnableOption "the hive supervisor and its agents";

    package = mkOption {
      type = types.package;
      default = pkgs.hive or (pkgs.callPackage ./package.nix { });
      defaultText = literalExpression "pkgs.callPackage ./package.nix { }";
    };

    claudePackage = mkOption {
      type = types.nullOr types.package;
      default = claudeFromNixpkgs;
      defaultText = literalExpression "claude-code, allowed by a predicate scoped to it";
      description = "The claude CLI the agents run; null: `claude` from PATH.";
    };

    environmentFile = mkOption {
      type = types.nullOr types.str;
      default = "/etc/hive/env";
      description = ''
        KEY=value lines for the supervisor, outside the world-readable store: e.g.
        ANTHROPIC_API_KEY, which reaches the agents' claude. Optional: a missing file is
        skipped.
      '';
    };

    adminGroup = mkOption {
      type = types.str;
      default = "hive-admin";
      description = "Members may use hivectl (the admin socket is 0660 to this group).";
    };

    dashboard = {
      enable = mkOption {
        type = types.bool;
        default = true;
      };
      host = mkOption {
        type = types.str;
        default = "127.0.0.1";
      };
      port = mkOption {
        type = types.port;
        default = 8417;
      };
    };

    defaultSandbox = mkOption {
      type = types.enum [
        "process"
        "bwrap"
        "nspawn"
      ];
      default = "nspawn";
      description = "Where agents run unless they say otherwise.";
    };

    operatorSandboxes = mkOption {
      type = types.listOf (
        types.enum [
          "process"
          "bwrap"
          "nspawn"
        ]
      );
      default = [
        "bwrap"
        "nspawn"
      ];
      description = ''
        Sandboxes a member of adminGroup may spawn agents into, approve spawns for, or open
        the dashboard terminal in. The others (by default "process", which runs as the
        supervisor's own uid) need root.
      '';
    };

    uidBase = mkOption {
      type = uidBlockStart;
      default = hiveLib.uidBase;
      description = "Start of the host uid range for agents (a multiple of 65536).";
    };

    watchdogSec = mkOption {
      type = types.int;
      default = 30;
    };
    startLimitBurst = mkOption {
      type = types.int;
      default = 5;
    };
    startLimitIntervalSec = mkOption {
      type = types.int;
      default = 300;
    };

    settings = mkOption {
      type = types.attrsOf types.anything;
      default = { };
      example = {
        restart_intensity = 5;
        restart_period = 60;
      };
      description = "Further keys of the [hive] table of hive.toml.";
    };

    agents = mkOption {
      type = types.attrsOf (types.submodule agentModule);
      default = { };
    };

    federation = federationOptions;
  };

  config = mkIf cfg.enable {
    assertions =
      map (a: {
        assertion = hiveLib.containerNameFits a.name;
        message =
          "services.hive.agents.${a.name}: its container ${hiveLib.containerName a.name} is longer "
          + "than nixos-container's ${toString hiveLib.maxContainerName} characters; use a name of "
          + "at most 9 characters, or set sandbox = \"bwrap\" for this agent.";
      }) nspawnAgents
      ++ map (group: {
        assertion = false;
        message =
          "services.hive.agents: "
          + builtins.concatStringsSep ", " (map (a: a.name) group)
          + " get the same uid block; set `uid` on one of them (a multiple of 65536).";
      }) sharedUids
      ++ map (a: {
        assertion = a.parent == "" || cfg.agents ? ${a.parent};
        message = "services.hive.agents.${a.name}: parent '${a.parent}' is not a declared agent.";
      }) agents
      ++ federationAssertions;

    users.groups.${cfg.adminGroup} = { };

    environment.etc."hive/hive.toml".source = hiveToml;
    environment.systemPackages = [ cfg.package ];

    systemd.tmpfiles.rules = [
      # 0711: each sandbox reaches its own dir and socket without listing the others.
      "d ${stateDir} 0711 root root -"
      "d ${stateDir}/agents 0711 root root -"
      "d ${runDir} 0711 root root -"
      "d ${runDir}/agents 0711 root root -"
    ]
    ++ map (
      a:
      let
        uid = toString (agentUid a);
      in
      "d ${stateDir}/agents/${a.name} 0700 ${uid} ${uid} -"
    ) nspawnAgents;

    systemd.services.hive-supervisor = {
      description = "hive supervisor: a fleet of AI coding agents";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      path = [
        cfg.package
        pkgs.bubblewrap
        pkgs.util-linux # setpriv, prlimit, nsenter
        config.systemd.package # machinectl
      ]
      ++ lib.optional (cfg.claudePackage != null) cfg.claudePackage;
      restartTriggers = [ hiveToml ];
      # More than startLimitBurst crashes within the interval: stay failed, do not loop.
      startLimitIntervalSec = cfg.startLimitIntervalSec;
      startLimitBurst = cfg.startLimitBurst;
      serviceConfig = {
        # READY=1 once the db is open and the sockets listen; WATCHDOG=1 from the main loop.
        Type = "notify";
        NotifyAccess = "main";
        WatchdogSec = cfg.watchdogSec;
        Restart = "on-failure";
        RestartSec = 5;
        # hive-supervisor exits 78 when it refuses its hive.toml: retrying cannot help.
        RestartPreventExitStatus = 78;
        ExecStart = lib.escapeShellArgs command;
        # Root, to switch each sandbox to its agent's uid and to enter containers; the
        # agents never run as root on the host.
        User = "root";
        KillMode = "mixed";
        TimeoutStopSec = 30;
        StateDirectory = "hive";
        StateDirectoryMode = "0711";
        RuntimeDirectory = "hive";
        RuntimeDirectoryMode = "0711";
        # Containers bind /run/hive/agents; it must outlive a restart of the supervisor.
        RuntimeDirectoryPreserve = "yes";
        ProtectSystem = "full";
        PrivateTmp = true;
        LimitNOFILE = 65536;
        TasksMax = 16384;
      }
      // lib.optionalAttrs (cfg.environmentFile != null) {
        EnvironmentFile = "-${cfg.environmentFile}";
      };
    };

    containers = builtins.listToAttrs (map container nspawnAgents);
  };
}
