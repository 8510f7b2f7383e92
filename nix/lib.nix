# Pure helpers of the hive NixOS module. Builtins only (no nixpkgs), so that CI can evaluate
# them with a bare `nix-instantiate --eval` and compare with the Python side.
let
  inherit (builtins)
    attrNames
    concatStringsSep
    filter
    foldl'
    genList
    hashString
    isAttrs
    isBool
    isFloat
    isInt
    isList
    isString
    map
    match
    stringLength
    substring
    toJSON
    ;

  hexValue = {
    "0" = 0; "1" = 1; "2" = 2; "3" = 3; "4" = 4; "5" = 5; "6" = 6; "7" = 7;
    "8" = 8; "9" = 9; "a" = 10; "b" = 11; "c" = 12; "d" = 13; "e" = 14; "f" = 15;
  };
  chars = s: genList (i: substring i 1 s) (stringLength s);
  fromHex = s: foldl' (acc: c: acc * 16 + hexValue.${c}) 0 (chars s);

  # TOML from plain Nix values. A JSON string is a valid TOML basic string (the escapes
  # toJSON emits are a subset of TOML's), which keeps quoting in one trusted place.
  key = k: if match "[A-Za-z0-9_-]+" k != null then k else toJSON k;
  value =
    v:
    if isString v then toJSON v
    else if isBool v then (if v then "true" else "false")
    else if isInt v || isFloat v then toString v
    else if isList v then "[" + concatStringsSep ", " (map value v) + "]"
    else if isAttrs v then
      "{" + concatStringsSep ", " (map (k: "${key k} = ${value v.${k}}") (attrNames v)) + "}"
    else throw "hive.toml: cannot render a value of type ${builtins.typeOf v}";
  # Keys whose value is null are left out: hive's default applies (e.g. unrestricted
  # allowed_recipients).
  body =
    attrs:
    concatStringsSep "" (
      map (k: "${key k} = ${value attrs.${k}}\n") (filter (k: attrs.${k} != null) (attrNames attrs))
    );
in
rec {
  # Same numbers as hive/sandboxes/uids.py: tests check that both agree.
  uidBase = 1610612736; # 0x60000000
  uidBlock = 65536;
  uidSlots = 4096;
  agentSlot = name: fromHex (substring 0 3 (hashString "sha256" name));
  agentUid = base: name: base + uidBlock * agentSlot name;

  containerPrefix = "h-";
  maxContainerName = 11; # nixos-container's limit (ve-<name> must fit IFNAMSIZ)
  containerName = name: containerPrefix + name;
  containerNameFits = name: stringLength (containerName name) <= maxContainerName;

  inherit fromHex;

  # [hive] table plus one [[agent]] per agent, in the schema of hive/config.py.
  toHiveToml =
    { hive, agents }:
    "[hive]\n" + body hive + concatStringsSep "" (map (a: "\n[[agent]]\n" + body a) agents);

  # One agent of services.hive.agents -> its [[agent]] table (snake_case keys).
  agentTable =
    { defaultSandbox }:
    a: {
      inherit (a) name runtime model parent network persistent prompt env;
      sandbox = if a.sandbox == null then defaultSandbox else a.sandbox;
      allowed_recipients = a.allowedRecipients;
      allowed_tools = a.allowedTools;
      bash_allow = a.bashAllow;
      # Store paths: the supervisor puts <path>/bin on the turn's PATH in every sandbox.
      packages = map toString a.packages;
      mcp_servers = map (n: {
        name = n;
        inherit (a.mcpServers.${n}) command args env shared;
        allowed_tools = a.mcpServers.${n}.allowedTools;
      }) (attrNames a.mcpServers);
    }
    // a.extraConfig;
}
