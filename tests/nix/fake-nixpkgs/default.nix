# A fake nixpkgs for the module's `import pkgs.path { ... }`: like nixpkgs, it refuses the
# unfree claude-code unless config.allowUnfreePredicate admits it.
{
  system,
  config ? { },
}:
let
  fake = import ../pkgs.nix;
  claude = fake.fakePackage "claude-code";
  admitted = (config.allowUnfreePredicate or (_: false)) claude;
in
{
  claude-code =
    if admitted then
      claude // { inherit system; }
    else
      throw "Package 'claude-code' has an unfree license, refusing to evaluate.";
}
