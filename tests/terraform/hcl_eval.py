"""Evaluates Terraform configurations far enough to test them without terraform.

python-hcl2 parses a directory's .tf files; this module evaluates the subset
of the expression language they use (references to variables, locals, data
sources and resources; conditionals; operators; for expressions; splats;
string templates; the functions in FUNCTIONS) for given input variables, with
the attributes only a provider knows (an ARN, the account id) given as stubs.
aws_iam_policy_document data sources are rendered the way the provider
renders them, to a policy as a Python dict.

Anything outside that subset raises Unsupported rather than guessing, so a
construct added to the configuration fails the tests until this learns it.
Like Terraform, a conditional yields only its chosen branch's errors and
the binary operators evaluate both operands.
"""

import base64
import glob
import os
import posixpath
import re

import hcl2
from lark import Token, Tree


class Unsupported(Exception):
    """A construct this evaluator does not know."""


class EvalError(Exception):
    """What Terraform would report as an error while evaluating."""


def _trees(children):
    """The children that carry meaning: no punctuation, newlines or comments."""
    return [c for c in children if isinstance(c, Tree) and c.data != "new_line_or_comment"]


class Body:
    """The attributes (name -> expression tree) and blocks of a block body."""

    def __init__(self, tree):
        self.attrs = {}
        self.blocks = []
        for node in _trees(tree.children):
            if node.data == "attribute":
                name = _trees(node.children)[0]
                self.attrs[_name(name)] = _trees(node.children)[1]
            elif node.data == "block":
                parts = _trees(node.children)
                labels = [_label(p) for p in parts[:-1]]
                self.blocks.append((labels[0], labels[1:], Body(parts[-1])))
            else:
                raise Unsupported(f"body element {node.data}")

    def blocks_of(self, kind):
        return [body for k, _, body in self.blocks if k == kind]


def _name(tree):
    token = tree.children[0]
    return str(token.children[0] if isinstance(token, Tree) else token)


def _label(tree):
    if tree.data == "string":
        return "".join(str(p.children[0]) for p in _trees(tree.children))
    return _name(tree)


def load_dir(path):
    """Every top-level block of the directory's .tf files, as (kind, labels, Body)."""
    blocks = []
    for file in sorted(glob.glob(os.path.join(path, "*.tf"))):
        with open(file, encoding="utf-8") as f:
            (body,) = _trees(hcl2.parses_to_tree(f.read()).children)
            blocks.extend(Body(body).blocks)
    return blocks


class Config:
    """One directory's configuration, evaluated for one set of input variables.

    variables: values of the input variables (the declared defaults fill the
    rest); stubs: {("aws_x", "name"): {"attr": value}} for every data source
    and resource attribute the expressions read that only a provider knows.
    """

    def __init__(self, path, variables, stubs=None):
        self.path = path
        self.stubs = stubs or {}
        self.declared = {}
        self.locals = {}
        self.data = {}
        self.resources = {}
        self.modules = {}
        for kind, labels, body in load_dir(path):
            if kind == "variable":
                self.declared[labels[0]] = body
            elif kind == "locals":
                self.locals.update(body.attrs)
            elif kind == "data":
                self.data[tuple(labels)] = body
            elif kind == "resource":
                self.resources[tuple(labels)] = body
            elif kind == "module":
                self.modules[labels[0]] = body
        unknown = set(variables) - set(self.declared)
        if unknown:
            raise EvalError(f"undeclared variables: {sorted(unknown)}")
        self.vars = {}
        for name, body in self.declared.items():
            if name in variables:
                value = variables[name]
            elif "default" in body.attrs:
                value = self.eval(body.attrs["default"])
            else:
                raise EvalError(f"variable {name} has no value and no default")
            if "type" in body.attrs:
                value = _fill_optional(body.attrs["type"], value)
            self.vars[name] = value
        self._local_values = {}
        self._rendering = set()

    # -- what a test asks for ---------------------------------------------

    def validation_errors(self):
        """The error messages of the failing validation blocks, by variable."""
        errors = {}
        for name, body in self.declared.items():
            for rule in body.blocks_of("validation"):
                if self.eval(rule.attrs["condition"]) is not True:
                    errors.setdefault(name, []).append(self.eval(rule.attrs["error_message"]))
        return errors

    def precondition_errors(self, kind, labels, scope=None):
        """The error messages of the failing lifecycle preconditions of a resource
        (of one instance, with scope from instances())."""
        body = self.data[labels] if kind == "data" else self.resources[labels]
        errors = []
        for lifecycle in body.blocks_of("lifecycle"):
            for rule in lifecycle.blocks_of("precondition"):
                if self.eval(rule.attrs["condition"], scope) is not True:
                    errors.append(self.eval(rule.attrs["error_message"], scope))
        return errors

    def count(self, kind, labels):
        """How many instances a resource or data source has (1 without count)."""
        body = self.data[labels] if kind == "data" else self.resources[labels]
        if "count" not in body.attrs:
            return 1
        return self.eval(body.attrs["count"])

    def instances(self, kind, labels):
        """(key, scope, body) for each instance of a for_each resource or data source."""
        body = self.data[labels] if kind == "data" else self.resources[labels]
        collection = self.eval(body.attrs["for_each"])
        if isinstance(collection, list):
            collection = {k: k for k in collection}
        return [(k, {"each": {"key": k, "value": v}}, body) for k, v in sorted(collection.items())]

    def module_arguments(self, name):
        """The arguments of a module call, evaluated."""
        body = self.modules[name]
        return {k: self.eval(v) for k, v in body.attrs.items() if k not in ("source", "version", "providers")}

    def attr(self, body, name, scope=None):
        return self.eval(body.attrs[name], scope)

    def policy(self, name):
        """The rendered aws_iam_policy_document data source NAME (without count)."""
        return self._render_policy(self.data[("aws_iam_policy_document", name)])

    # -- references --------------------------------------------------------

    def _local(self, name):
        if name not in self._local_values:
            if name not in self.locals:
                raise EvalError(f"no local.{name}")
            if name in self._rendering:
                raise EvalError(f"local.{name} refers to itself")
            self._rendering.add(name)
            self._local_values[name] = self.eval(self.locals[name])
            self._rendering.discard(name)
        return self._local_values[name]

    def _instance(self, kind, labels):
        """A resource or data source as expressions see it: an object, or a
        list of objects when it has count."""
        table = self.data if kind == "data" else self.resources
        if labels not in table:
            raise EvalError(f"no {kind} {'.'.join(labels)}")
        body = table[labels]
        count = self.eval(body.attrs["count"]) if "count" in body.attrs else None
        if count == 0:
            return []
        if labels[0] == "aws_iam_policy_document":
            obj = {"json": self._render_policy(body)}
        elif labels in self.stubs:
            obj = self.stubs[labels]
        else:
            obj = _Unknown(".".join(labels))
        return obj if count is None else [obj] * count

    def _render_policy(self, body):
        statements = []
        if "source_policy_documents" in body.attrs:
            for doc in self.eval(body.attrs["source_policy_documents"]):
                statements.extend(doc["Statement"])
        for kind, _, st in body.blocks:
            if kind == "dynamic":
                raise Unsupported("dynamic blocks in a policy document")
            if kind != "statement":
                continue
            out = {}
            if "sid" in st.attrs:
                out["Sid"] = self.eval(st.attrs["sid"])
            out["Effect"] = self.eval(st.attrs["effect"]) if "effect" in st.attrs else "Allow"
            for attr, key in (("actions", "Action"), ("not_actions", "NotAction"),
                              ("resources", "Resource"), ("not_resources", "NotResource")):
                if attr in st.attrs:
                    out[key] = _one_or_list(self.eval(st.attrs[attr]))
            for principals in st.blocks_of("principals"):
                out.setdefault("Principal", {})[self.attr(principals, "type")] = _one_or_list(
                    self.attr(principals, "identifiers"))
            for cond in st.blocks_of("condition"):
                test, variable = self.attr(cond, "test"), self.attr(cond, "variable")
                out.setdefault("Condition", {}).setdefault(test, {})[variable] = _one_or_list(
                    self.attr(cond, "values"))
            statements.append(out)
        sids = [s["Sid"] for s in statements if "Sid" in s]
        if len(sids) != len(set(sids)):
            raise EvalError(f"duplicate statement ids: {sids}")
        return {"Version": "2012-10-17", "Statement": statements}

    # -- expressions ---------------------------------------------------------

    def eval(self, node, scope=None):
        scope = scope or {}
        method = getattr(self, "_e_" + node.data, None)
        if method is None:
            raise Unsupported(f"expression {node.data}")
        return method(node, scope)

    def _e_expr_term(self, node, scope):
        (inner,) = _trees(node.children)
        return self.eval(inner, scope)

    def _e_int_lit(self, node, scope):
        return int(str(node.children[0]))

    def _e_float_lit(self, node, scope):
        return float(str(node.children[0]))

    def _e_literal_value(self, node, scope):
        return {"true": True, "false": False, "null": None}[str(node.children[0])]

    def _e_string(self, node, scope):
        out = []
        for part in _trees(node.children):
            (piece,) = part.children
            if isinstance(piece, Token) and piece.type == "STRING_CHARS":
                out.append(_unescape(str(piece)))
            elif isinstance(piece, Token) and piece.type == "ESCAPED_INTERPOLATION":
                out.append(str(piece)[1:])
            elif isinstance(piece, Tree) and piece.data == "interpolation":
                out.append(_to_string(self.eval(_trees(piece.children)[0], scope)))
            else:
                raise Unsupported(f"string part {piece}")
        return "".join(out)

    def _e_heredoc_template_trim(self, node, scope):
        text = str(node.children[0])
        if "${" in text or "%{" in text:
            raise Unsupported("templates in heredocs")
        lines = text.split("\n")[1:-2]
        indent = min((len(l) - len(l.lstrip()) for l in lines if l.strip()), default=0)
        return "".join(l[indent:] + "\n" for l in lines)

    def _e_tuple(self, node, scope):
        return [self.eval(c, scope) for c in _trees(node.children)]

    def _e_object(self, node, scope):
        out = {}
        for elem in _trees(node.children):
            key_node, value = _trees(elem.children)
            (key_expr,) = _trees(key_node.children)
            bare = _bare_identifier(key_expr)
            key = bare if bare is not None else self.eval(key_expr, scope)
            out[key] = self.eval(value, scope)
        return out

    def _e_identifier(self, node, scope):
        name = _name(node)
        if name in scope:
            return scope[name]
        return _Root(self, name)

    def _e_get_attr_expr_term(self, node, scope):
        target, get_attr = _trees(node.children)
        return _get(self.eval(target, scope), _name(_trees(get_attr.children)[0]))

    def _e_index_expr_term(self, node, scope):
        target, index = _trees(node.children)
        if index.data != "braces_index":
            raise Unsupported(f"index {index.data}")
        return _index(self.eval(target, scope), self.eval(_trees(index.children)[0], scope))

    def _e_full_splat_expr_term(self, node, scope):
        target, splat = _trees(node.children)
        value = self.eval(target, scope)
        items = value if isinstance(value, list) else ([] if value is None else [value])
        out = []
        for item in items:
            for step in _trees(splat.children):
                if step.data != "get_attr":
                    raise Unsupported(f"splat step {step.data}")
                item = _get(item, _name(_trees(step.children)[0]))
            out.append(item)
        return out

    def _e_conditional(self, node, scope):
        cond, then, other = _trees(node.children)
        value = self.eval(cond, scope)
        if not isinstance(value, bool):
            raise EvalError(f"condition is {value!r}, not a bool")
        return self.eval(then if value else other, scope)

    def _e_binary_op(self, node, scope):
        left, term = _trees(node.children)
        op_node, right = _trees(term.children)
        op = str(op_node.children[0])
        a, b = self.eval(left, scope), self.eval(right, scope)
        if op in ("==", "!="):
            return _equal(a, b) == (op == "==")
        if op in ("&&", "||"):
            if not isinstance(a, bool) or not isinstance(b, bool):
                raise EvalError(f"{a!r} {op} {b!r}: operands must be bools")
            return (a and b) if op == "&&" else (a or b)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
            raise EvalError(f"{a!r} {op} {b!r}: operands must be numbers")
        return {"<": lambda: a < b, ">": lambda: a > b, "<=": lambda: a <= b,
                ">=": lambda: a >= b, "+": lambda: a + b, "-": lambda: a - b,
                "*": lambda: a * b, "/": lambda: a / b, "%": lambda: a % b}[op]()

    def _e_unary_op(self, node, scope):
        op = str(node.children[0])
        value = self.eval(_trees(node.children)[0], scope)
        if op == "!":
            if not isinstance(value, bool):
                raise EvalError(f"!{value!r}: operand must be a bool")
            return not value
        return -value

    def _e_for_tuple_expr(self, node, scope):
        intro, *rest = _trees(node.children)
        out = []
        for inner in self._for_scopes(intro, rest, scope):
            out.append(self.eval(rest[0], inner))
        return out

    def _e_for_object_expr(self, node, scope):
        if any(isinstance(c, Token) and c.type == "ELLIPSIS" for c in node.children):
            raise Unsupported("grouping for expressions")
        intro, *rest = _trees(node.children)
        out = {}
        for inner in self._for_scopes(intro, rest[1:], scope):
            out[self.eval(rest[0], inner)] = self.eval(rest[1], inner)
        return out

    def _for_scopes(self, intro, rest, scope):
        parts = _trees(intro.children)
        names = [_name(p) for p in parts[:-1]]
        collection = self.eval(parts[-1], scope)
        cond = rest[-1] if rest and rest[-1].data == "for_cond" else None
        pairs = sorted(collection.items()) if isinstance(collection, dict) else list(enumerate(collection))
        for key, value in pairs:
            inner = dict(scope)
            if len(names) == 1:
                inner[names[0]] = value
            else:
                inner[names[0]], inner[names[1]] = key, value
            if cond is None or self.eval(_trees(cond.children)[0], inner) is True:
                yield inner

    def _e_function_call(self, node, scope):
        parts = _trees(node.children)
        name = _name(parts[0])
        args = _trees(parts[1].children) if len(parts) > 1 else []
        if any(isinstance(c, Token) and c.type == "ELLIPSIS" for c in (parts[1].children if len(parts) > 1 else [])):
            raise Unsupported("expanding arguments with ...")
        if name == "can":
            try:
                self.eval(args[0], scope)
                return True
            except EvalError:
                return False
        if name == "try":
            for arg in args:
                try:
                    return self.eval(arg, scope)
                except EvalError:
                    continue
            raise EvalError("try: no argument could be evaluated")
        if name not in FUNCTIONS:
            raise Unsupported(f"function {name}")
        values = [self.eval(a, scope) for a in args]
        try:
            return FUNCTIONS[name](*values)
        except EvalError:
            raise
        except Exception as e:  # a wrong argument: Terraform's error too
            raise EvalError(f"{name}({values!r}): {e}") from e


class _Root:
    """The first name of a reference: var, local, data, or a resource type."""

    def __init__(self, config, name):
        self.config, self.name, self.path = config, name, []

    def get(self, attr):
        c = self.config
        if self.name == "var":
            if attr not in c.vars:
                raise EvalError(f"no var.{attr}")
            return c.vars[attr]
        if self.name == "local":
            return c._local(attr)
        if self.name == "path" and attr == "module":
            return c.path
        if self.name in ("each", "count", "path", "module", "terraform", "self"):
            raise Unsupported(f"{self.name}.{attr}")
        step = _Root(c, self.name)
        step.path = self.path + [attr]
        if self.name == "data" and len(step.path) == 2:
            return c._instance("data", tuple(step.path))
        if self.name != "data" and len(step.path) == 1:
            return c._instance("resource", (self.name, attr))
        return step


class _Unknown:
    """An object only a provider could fill in; any attribute of it is an error."""

    def __init__(self, name):
        self.name = name


def _get(value, attr):
    if isinstance(value, _Root):
        return value.get(attr)
    if isinstance(value, _Unknown):
        raise EvalError(f"{value.name}.{attr} is known only to the provider: give it as a stub")
    if isinstance(value, dict):
        if attr not in value:
            raise EvalError(f"no attribute {attr} in {sorted(value)}")
        return value[attr]
    raise EvalError(f"cannot read .{attr} of {value!r}")


def _index(value, key):
    if isinstance(value, list):
        if not isinstance(key, int) or not 0 <= key < len(value):
            raise EvalError(f"index {key!r} out of range")
        return value[key]
    if isinstance(value, dict):
        if key not in value:
            raise EvalError(f"no key {key!r}")
        return value[key]
    raise EvalError(f"cannot index {value!r}")


def _equal(a, b):
    """Terraform's ==: values of different types are never equal, but
    numbers are numbers whether written 1 or 1.0."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    return a == b and (numbers or type(a) is type(b))


def _bare_identifier(expr):
    """The name of an object key written as a bare identifier, else None."""
    if expr.data == "expr_term":
        inner = _trees(expr.children)
        if len(inner) == 1 and inner[0].data == "identifier":
            return _name(inner[0])
    if expr.data == "identifier":
        return _name(expr)
    return None


def _fill_optional(type_node, value):
    """Adds the optional attributes a value of an object(...) type leaves out, as null."""
    if value is None:
        return None
    call = type_node
    while call.data == "expr_term":
        call = _trees(call.children)[0]
    if call.data != "function_call" or _name(_trees(call.children)[0]) != "object":
        return value
    (fields,) = _trees(_trees(call.children)[1].children)
    obj = _trees(fields.children)[0] if fields.data == "expr_term" else fields
    out = dict(value)
    for elem in _trees(obj.children):
        key_node, _ = _trees(elem.children)
        key = _bare_identifier(_trees(key_node.children)[0])
        out.setdefault(key, None)
    extra = set(out) - {_bare_identifier(_trees(_trees(e.children)[0].children)[0]) for e in _trees(obj.children)}
    if extra:
        raise EvalError(f"attributes not in the type: {sorted(extra)}")
    return out


def _unescape(text):
    return re.sub(r'\\(["\\nrt])', lambda m: {"n": "\n", "r": "\r", "t": "\t"}.get(m[1], m[1]), text)


def _to_string(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise EvalError(f"cannot interpolate {value!r} into a string")


def _one_or_list(values):
    """How the provider writes a list in policy JSON: one value alone, several sorted."""
    values = list(dict.fromkeys(values))
    return values[0] if len(values) == 1 else sorted(values)


def _flatten(values):
    out = []
    for v in values:
        out.extend(_flatten(v) if isinstance(v, list) else [v])
    return out


def _need(cond, message):
    if not cond:
        raise EvalError(message)


def _str(value):
    _need(isinstance(value, str), f"{value!r} is not a string")
    return value


def _regex(pattern, text):
    m = re.search(pattern, _str(text))
    _need(m is not None, f"{pattern} does not match {text!r}")
    if m.re.groupindex:
        return m.groupdict()
    return list(m.groups()) if m.re.groups else m.group(0)


def _templatefile(path, variables):
    """Terraform's templatefile for templates that only interpolate variables."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if "%{" in text.replace("%%{", ""):
        raise Unsupported(f"template directives in {path}")

    def substitute(m):
        if m[0] == "$${":
            return "${"
        if m[1] not in variables:
            raise EvalError(f"{path}: no template variable {m[1]}")
        return _to_string(variables[m[1]])

    out = re.sub(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}", substitute, text)
    leftover = re.sub(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}", "", text)
    if "${" in leftover:
        raise Unsupported(f"template expressions other than ${{name}} in {path}")
    return out


def _replace(text, search, replacement):
    """Terraform's replace: a search written /like this/ is a regular expression."""
    _str(text), _str(search), _str(replacement)
    if len(search) > 1 and search.startswith("/") and search.endswith("/"):
        if "$" in replacement:
            raise Unsupported("replace: capture group references in the replacement")
        return re.sub(search[1:-1], lambda m: replacement, text)
    return text.replace(search, replacement)


def _coalesce(*values):
    for v in values:
        if v is not None and v != "":
            return v
    raise EvalError("coalesce: no non-null, non-empty argument")


FUNCTIONS = {
    "alltrue": lambda xs: all(x is True for x in xs),
    "base64encode": lambda s: base64.b64encode(_str(s).encode()).decode(),
    "basename": lambda s: posixpath.basename(_str(s)),
    "coalesce": _coalesce,
    "concat": lambda *ls: [x for l in ls for x in l],
    "contains": lambda l, v: v in l,
    "distinct": lambda l: list(dict.fromkeys(l)),
    "endswith": lambda s, suffix: _str(s).endswith(_str(suffix)),
    "filebase64sha256": lambda path: f"<sha256 of {path}>",
    "join": lambda sep, l: _str(sep).join(_str(x) for x in l),
    "jsonencode": lambda v: v,
    "keys": lambda m: sorted(m),
    "length": lambda v: len(v),
    "lookup": lambda m, k, d: m.get(k, d),
    "max": lambda *xs: max(xs),
    "merge": lambda *ms: {k: v for m in ms for k, v in m.items()},
    "one": lambda l: (None if not l else l[0]) if len(l) <= 1 else _need(False, "more than one element"),
    "regex": _regex,
    "replace": _replace,
    "setintersection": lambda *ls: [x for x in ls[0] if all(x in l for l in ls[1:])],
    "sort": lambda l: sorted(_str(x) for x in l),
    "startswith": lambda s, prefix: _str(s).startswith(_str(prefix)),
    "templatefile": _templatefile,
    "toset": lambda l: sorted(set(l)),
    "tostring": _to_string,
    "trimprefix": lambda s, p: _str(s)[len(p):] if _str(s).startswith(p) else s,
    "upper": lambda s: _str(s).upper(),
    "lower": lambda s: _str(s).lower(),
    "values": lambda m: [m[k] for k in sorted(m)],
    "flatten": lambda l: _flatten(l),
}
