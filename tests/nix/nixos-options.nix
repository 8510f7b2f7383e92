# Typed stand-ins for the NixOS options nix/module.nix sets or reads, declared with the real
# lib.mkOption and lib.types, with the types NixOS gives them (simplified where NixOS's own
# type needs the rest of NixOS, e.g. a container's `config` is a plain submodule here).
{ lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  listOfStr = mkOption {
    type = types.listOf types.str;
    default = [ ];
  };
  # systemd's unit option values, as NixOS's unitOption accepts them.
  unitValue = types.oneOf [
    types.bool
    types.int
    types.str
    types.path
    (types.listOf (types.oneOf [ types.bool types.int types.str ]))
  ];
  service = {
    options = {
      description = mkOption {
        type = types.str;
        default = "";
      };
      wantedBy = listOfStr;
      wants = listOfStr;
      after = listOfStr;
      path = mkOption {
        type = types.listOf (types.either types.package types.str);
        default = [ ];
      };
      restartTriggers = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      startLimitIntervalSec = mkOption { type = types.nullOr types.int; default = null; };
      startLimitBurst = mkOption { type = types.nullOr types.int; default = null; };
      serviceConfig = mkOption {
        type = types.attrsOf unitValue;
        default = { };
      };
    };
  };
  # What the module sets inside each agent's container: its own NixOS, evaluated as a
  # submodule whose pkgs, as in NixOS, is nixpkgs imported with the container's
  # nixpkgs.config (so claude-code is there only if the container admits it).
  containerSystem =
    { config, ... }:
    {
    config._module.args.pkgs =
      pkgs
      // import pkgs.path {
        inherit (pkgs.stdenv.hostPlatform) system;
        config = config.nixpkgs.config;
      };
    options = {
      nixpkgs.config = mkOption {
        type = types.submodule {
          freeformType = types.attrsOf types.anything;
          options.allowUnfreePredicate = mkOption {
            type = types.functionTo types.bool;
            default = _: false;
          };
        };
        default = { };
      };
      environment.systemPackages = mkOption {
        type = types.listOf types.package;
        default = [ ];
      };
      system.stateVersion = mkOption { type = types.str; };
    };
  };
  container =
    { name, ... }:
    {
      options = {
        autoStart = mkOption { type = types.bool; default = false; };
        privateUsers = mkOption {
          type = types.either types.ints.u32 (types.enum [ "no" "identity" "pick" ]);
          default = "no";
        };
        privateNetwork = mkOption { type = types.bool; default = false; };
        bindMounts = mkOption {
          type = types.attrsOf (
            types.submodule (
              { name, ... }:
              {
                options = {
                  mountPoint = mkOption { type = types.str; default = name; };
                  hostPath = mkOption { type = types.nullOr types.str; default = null; };
                  isReadOnly = mkOption { type = types.bool; default = true; };
                };
              }
            )
          );
          default = { };
        };
        config = mkOption {
          type = types.submoduleWith { modules = [ containerSystem ]; };
        };
      };
    };
in
{
  options = {
    assertions = mkOption {
      type = types.listOf (
        types.submodule {
          options.assertion = mkOption { type = types.bool; };
          options.message = mkOption { type = types.str; };
        }
      );
      default = [ ];
    };
    users.groups = mkOption {
      type = types.attrsOf (
        types.submodule {
          options.gid = mkOption { type = types.nullOr types.int; default = null; };
          options.members = listOfStr;
        }
      );
      default = { };
    };
    environment.etc = mkOption {
      type = types.attrsOf (
        types.submodule {
          options.source = mkOption { type = types.path; };
          options.mode = mkOption { type = types.str; default = "symlink"; };
        }
      );
      default = { };
    };
    environment.systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };
    systemd.package = mkOption {
      type = types.package;
      default = pkgs.fakePackage "systemd";
    };
    systemd.tmpfiles.rules = listOfStr;
    systemd.services = mkOption {
      type = types.attrsOf (types.submodule service);
      default = { };
    };
    system.stateVersion = mkOption { type = types.str; };
    containers = mkOption {
      type = types.attrsOf (types.submodule container);
      default = { };
    };
  };
}
