# The flake lives in nix/ of the hive repository; refer to it with `?dir=nix`, e.g.
#   inputs.hive.url = "git+file:///src/hive?dir=nix";
# then `imports = [ hive.nixosModules.default ];` and `services.hive.enable = true;`.
{
  description = "hive: a supervisor for a fleet of AI coding agents";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        hive = pkgs.callPackage ./package.nix { };
        default = hive;
      });

      overlays.default = final: _prev: { hive = final.callPackage ./package.nix { }; };

      nixosModules.default = ./module.nix;
      nixosModules.hive = ./module.nix;

      lib = import ./lib.nix;
    };
}
