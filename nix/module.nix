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
          description = "Packages on the agent's PATH (and in its container).";
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
          type = types.nullOr types.int;
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

  hiveTable = {
    state_dir = stateDir;
    run_dir = runDir;
    admin_group = cfg.adminGroup;
    dashboard = cfg.dashboard.enable;
    dashboard_host = cfg.dashboard.host;
    dashboard_port = cfg.dashboard.port;
    claude_bin = if cfg.claudePackage == null then "claude" else "${cfg.claudePackage}/bin/claude";
  }
  // cfg.settings;
  hiveTomlText = hiveLib.toHiveToml {
    hive = hiveTable;
    agents = map (hiveLib.agentTable { inherit (cfg) defaultSandbox; }) agents;
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

    uidBase = mkOption {
      type = types.int;
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
      }) agents;

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
