# Evaluates nix/module.nix on the real NixOS module system, for tests: nixpkgs' own
# lib.evalModules and lib.types, with typed stand-ins only for the NixOS options the module
# sets (nixos-options.nix) and for pkgs (pkgs.nix). What comes out is the module's real
# config for the given services.hive values, turned into JSON-friendly data.
{
  nixpkgs, # a directory holding nixpkgs' lib/ (the tests take it from HIVE_NIXPKGS_LIB)
  hive, # services.hive, as an operator writes it
  stateVersion ? "25.05",
}:
let
  lib = import (nixpkgs + "/lib");
  pkgs = import ./pkgs.nix;
  evaluated = lib.evalModules {
    modules = [
      { _module.args.pkgs = pkgs; }
      ./nixos-options.nix
      ../../nix/module.nix
      {
        services.hive = hive;
        system.stateVersion = stateVersion;
      }
    ];
  };
  inherit (evaluated) config options;
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
  nameOf = p: p.name or (toString p);
  containerJson =
    c:
    (removeAttrs c [ "config" ])
    // {
      packages = map nameOf c.config.environment.systemPackages;
      stateVersion = c.config.system.stateVersion;
      claudeAllowed = c.config.nixpkgs.config.allowUnfreePredicate (pkgs.fakePackage "claude-code");
      otherUnfreeAllowed = c.config.nixpkgs.config.allowUnfreePredicate (pkgs.fakePackage "slack");
    };
in
{
  enabled = config.services.hive.enable;
  settings = removeAttrs config.services.hive [ "package" "claudePackage" ];
  claudePackage = config.services.hive.claudePackage;
  toml = config.environment.etc."hive/hive.toml".source.text or null;
  service = config.systemd.services.hive-supervisor or null;
  tmpfiles = config.systemd.tmpfiles.rules;
  groups = builtins.attrNames config.users.groups;
  systemPackages = map nameOf config.environment.systemPackages;
  inherit failedAssertions;
  containers = builtins.mapAttrs (_: containerJson) config.containers;
  # What NixOS's manual build does with every option (documentation.nixos is on by
  # default): a module whose docs cannot be rendered fails nixos-rebuild.
  optionDocs = map (o: { inherit (o) name type; default = o.default.text or null; }) (
    lib.optionAttrSetToDocList options.services.hive
  );
  # As NixOS's system.build.toplevel does: a failed assertion stops the build.
  toplevel =
    if failedAssertions == [ ] then
      "ok"
    else
      throw "\nFailed assertions:\n${lib.concatStringsSep "\n" (map (m: "- ${m}") failedAssertions)}";
}
