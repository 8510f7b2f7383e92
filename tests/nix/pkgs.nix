# The stand-in for `pkgs`: fake packages (derivation-shaped attrsets whose store paths are
# never built), writeText that keeps its text readable, and `path`, a fake nixpkgs that the
# module's own import of nixpkgs (for claude-code) evaluates.
let
  fakePackage = name: {
    type = "derivation";
    inherit name;
    pname = name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };
in
{
  inherit fakePackage;
  bubblewrap = fakePackage "bubblewrap";
  util-linux = fakePackage "util-linux";
  hive = fakePackage "hive";
  git = fakePackage "git";
  path = ./fake-nixpkgs;
  stdenv.hostPlatform.system = "x86_64-linux";
  writeText = name: text: fakePackage name // { inherit text; };
}
