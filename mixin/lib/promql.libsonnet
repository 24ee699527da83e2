// A small PromQL rewriter: adds label matchers to the selectors of chosen series, leaving string
// literals and recorded series (names with a colon) untouched. Label names are not told apart from
// series names, so no label of ours may start with mlcost_ (none does). It splits on the series-name
// prefixes with native functions (std.split, std.substr): a character-by-character scan is very slow
// in the C++ jsonnet.
local identChars = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:0123456789';
local identEnd(s, i) =
  if i < std.length(s) && std.length(std.findSubstr(s[i], identChars)) > 0 then identEnd(s, i + 1) tailstrict else i;
local quotes(s) = std.length(std.split(s, '"')) - 1;

local addAt(expr, prefix, matchers, chosen) =
  local parts = std.split(expr, prefix);
  local step(acc, part) =
    local end = identEnd(part, 0);
    local name = prefix + std.substr(part, 0, end);
    local rest = std.substr(part, end, std.length(part));
    // A series name starts here if nothing of a name comes right before it and it is not inside a string.
    local starts = (acc.last == '' || std.length(std.findSubstr(acc.last, identChars)) == 0) && acc.q % 2 == 0;
    local braced = std.length(rest) > 0 && rest[0] == '{';
    local text =
      if !(starts && chosen(name)) then name + rest
      else if braced then
        name + '{' + matchers + (if std.length(rest) > 1 && rest[1] == '}' then '' else ',')
        + std.substr(rest, 1, std.length(rest))
      else name + '{' + matchers + '}' + rest;
    { out: acc.out + text, q: acc.q + quotes(name + rest), last: if text == '' then acc.last else text[std.length(text) - 1] };
  local first = parts[0];
  local init = { out: first, q: quotes(first), last: if first == '' then '' else first[std.length(first) - 1] };
  std.foldl(step, parts[1:], init).out;

{
  // `expr` with `matchers` added to every selector of a series for which `chosen(name)` is true.
  withMatchers(expr, matchers, chosen)::
    if matchers == '' then expr
    else addAt(addAt(expr, 'mlcost_', matchers, chosen), 'inference_cost_per_1k_usd', matchers, chosen),

  // Whether `name` is a series the exporter itself exports (recorded series hold a colon).
  exporterSeries(name)::
    (std.startsWith(name, 'mlcost_') || name == 'inference_cost_per_1k_usd') && std.length(std.findSubstr(':', name)) == 0,
}
