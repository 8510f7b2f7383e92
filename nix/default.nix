# Without flakes:
#   nix-build nix -A hive                      the package
#   imports = [ /path/to/hive/nix/module.nix ];  the NixOS module (services.hive)
{
  pkgs ? import <nixpkgs> { },
}:
{
  hive = pkgs.callPackage ./package.nix { };
  module = ./module.nix;
}
