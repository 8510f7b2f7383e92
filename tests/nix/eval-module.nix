# Evaluates nix/module.nix without nixpkgs, for tests: a stand-in for the few parts of lib
# the module uses, a small option filler (declared defaults + the values given), and stub
# packages whose store paths are fake. What comes out is the module's real `config` for
# those values, with the parts a test reads turned into JSON-friendly data.
{
  hive, # the services.hive values, as an operator would write them
  stateVersion ? "25.05",
}:
let
  leaf = name: { kind = "leaf"; inherit name; };
  types = {
    str = leaf "str";
    bool = leaf "bool";
    int = leaf "int";
    port = leaf "port";
    lines = leaf "lines";
    package = leaf "package";
    anything = leaf "anything";
    enum = values: leaf "enum" // { inherit values; };
    nullOr = inner: { kind = "nullOr"; inherit inner; };
    listOf = inner: { kind = "listOf"; inherit inner; };
    attrsOf = inner: { kind = "attrsOf"; inherit inner; };
    submodule = module: { kind = "submodule"; inherit module; };
  };

  lib = {
    inherit types;
    mkOption = attrs: attrs // { _isOption = true; };
    mkEnableOption = description: {
      _isOption = true;
      type = types.bool;
      default = false;
      inherit description;
    };
    mkIf = condition: content: if condition then content else { };
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    optional = cond: x: if cond then [ x ] else [ ];
    optionalAttrs = cond: attrs: if cond then attrs else { };
    escapeShellArgs = args: builtins.concatStringsSep " " args;
  };

  check =
    type: value:
    if type.kind == "leaf" && type.name == "enum" && !(builtins.elem value type.values) then
      throw "value ${builtins.toJSON value} is not one of ${builtins.toJSON type.values}"
    else
      value;

  fillType =
    type: name: value:
    if type.kind == "submodule" then
      fillModule type.module name value
    else if type.kind == "attrsOf" then
      builtins.mapAttrs (n: v: fillType type.inner n v) value
    else if type.kind == "listOf" then
      map (v: fillType type.inner name v) value
    else if type.kind == "nullOr" then
      (if value == null then null else fillType type.inner name value)
    else
      check type value;

  fillModule =
    module: name: value:
    let
      m = if builtins.isFunction module then module { inherit name lib; } else module;
    in
    fillOptions m.options value;

  fillOptions =
    options: values:
    let
      unknown = builtins.filter (k: !(options ? ${k})) (builtins.attrNames values);
    in
    if unknown != [ ] then
      throw "unknown option(s): ${builtins.concatStringsSep ", " unknown}"
    else
      builtins.mapAttrs (
        k: opt:
        if opt ? _isOption then
          fillType opt.type k (if values ? ${k} then values.${k} else opt.default)
        else
          fillOptions opt (values.${k} or { })
      ) options;

  fakePackage = name: {
    inherit name;
    pname = name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };
  pkgs = {
    bubblewrap = fakePackage "bubblewrap";
    util-linux = fakePackage "util-linux";
    claude-code = fakePackage "claude-code";
    hive = fakePackage "hive";
    writeText = name: text: fakePackage name // { inherit text; };
  };

  module = import ../../nix/module.nix;
  declared = (module { config = { }; inherit lib pkgs; }).options;
  filled = fillOptions declared { services.hive = hive; };
  config = {
    inherit (filled) services;
    system.stateVersion = stateVersion;
    systemd.package = fakePackage "systemd";
  };
  result = (module { inherit config lib pkgs; }).config;
  orEmpty = attrs: name: attrs.${name} or { };
  containerJson =
    name: c:
    let
      inner = c.config { pkgs = pkgs // { claude-code = fakePackage "claude-code"; }; };
    in
    (removeAttrs c [ "config" ])
    // {
      packages = map (p: p.name) inner.environment.systemPackages;
      stateVersion = inner.system.stateVersion;
      claudeAllowed = inner.nixpkgs.config.allowUnfreePredicate (fakePackage "claude-code");
      otherUnfreeAllowed = inner.nixpkgs.config.allowUnfreePredicate (fakePackage "slack");
    };
in
{
  enabled = result != { };
  toml = result.environment.etc."hive/hive.toml".source.text or null;
  service = orEmpty (orEmpty result "systemd").services or { } "hive-supervisor";
  tmpfiles = result.systemd.tmpfiles.rules or [ ];
  groups = builtins.attrNames (result.users.groups or { });
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) (result.assertions or [ ]));
  containers = builtins.mapAttrs containerJson (result.containers or { });
}
