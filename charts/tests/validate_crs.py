#!/usr/bin/env python3
"""Validate custom resources against the openAPIV3Schema of CRDs (kubernetes-validate skips CRs).

  helm template chart/ | python validate_crs.py --crds chart/files/crds.yaml - [--strict] [--expect N]

Reads CRDs from --crds (files/dirs; CRDs found in the input stream are used too), then every non-CRD document
whose apiVersion/kind matches a CRD version is validated with `jsonschema` (a kubernetes-validate dependency).
OpenAPI-only keywords (nullable, x-kubernetes-*) are ignored by jsonschema except:
  --strict  rejects unknown fields where the schema does not preserve them (what the API server prunes);
  x-kubernetes-validations (CEL) rules are evaluated when they use only has(self.<path>), self.<path>,
            'string' literals, !, &&, ||, ==, != and parentheses (every rule our CRDs have); a rule outside that subset is only warned about.
--expect N fails unless exactly N custom resources were validated (so a kind that silently stopped matching a
CRD is noticed). Exit 1 on any invalid CR.
"""
import argparse
import pathlib
import re
import sys

import jsonschema
import yaml


def load_docs(paths):
    for p in paths:
        if p == '-':
            yield from (d for d in yaml.safe_load_all(sys.stdin) if d)
            continue
        pp = pathlib.Path(p)
        files = sorted(pp.rglob('*.y*ml')) if pp.is_dir() else [pp]
        for f in files:
            yield from (d for d in yaml.safe_load_all(f.read_text()) if d)


def strictify(s):
    if not isinstance(s, dict):
        return s
    s = dict(s)
    if s.get('type') == 'object' and 'properties' in s and not s.get('x-kubernetes-preserve-unknown-fields') \
            and 'additionalProperties' not in s:
        s['additionalProperties'] = False
    for k in ('properties', 'patternProperties'):
        if k in s:
            s[k] = {n: strictify(v) for n, v in s[k].items()}
    for k in ('items', 'additionalProperties'):
        if isinstance(s.get(k), dict):
            s[k] = strictify(s[k])
    for k in ('allOf', 'anyOf', 'oneOf'):
        if k in s:
            s[k] = [strictify(v) for v in s[k]]
    return s


_CEL_TOKEN = re.compile(r"\s*(?:(has\(self((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\))|(&&|\|\||!=|==|!|\(|\))"
                        r"|self((?:\.[A-Za-z_][A-Za-z0-9_]*)+)|('[^'\\]*'))")


def _lookup(obj, path):
    """(found, value) of a dotted path under obj."""
    cur = obj
    for part in path.split('.')[1:]:
        if not (isinstance(cur, dict) and part in cur):
            return False, None
        cur = cur[part]
    return True, cur


def cel_eval(rule, obj):
    """Evaluates a CEL rule of the supported subset against obj; None if the rule is outside the subset."""
    out, pos = [], 0
    while pos < len(rule):
        m = _CEL_TOKEN.match(rule, pos)
        if not m:
            return None
        pos = m.end()
        if m.group(1):
            out.append(repr(_lookup(obj, m.group(2))[0]))
        elif m.group(4):
            # A field's value; an absent one (the API server would have defaulted it) compares as None.
            found, value = _lookup(obj, m.group(4))
            if found and not isinstance(value, (str, int, bool)):
                return None
            out.append(repr(value if found else None))
        elif m.group(5):
            out.append(repr(m.group(5)[1:-1]))
        else:
            out.append({'&&': ' and ', '||': ' or ', '!': ' not ', '!=': ' != ', '==': ' == '}.get(m.group(3), m.group(3)))
    if rule[pos:].strip():
        return None
    return bool(eval(''.join(out), {'__builtins__': {}}, {}))  # only True/False/and/or/not/==/!=/() remain


def cel_errors(schema, obj, path=()):
    """Yields (path, message) for every violated x-kubernetes-validations rule; warns about unchecked ones."""
    if not isinstance(schema, dict):
        return
    for v in schema.get('x-kubernetes-validations') or []:
        ok = cel_eval(v['rule'], obj)
        if ok is None:
            print(f"WARN {'.'.join(map(str, path)) or '<root>'}: CEL rule not checked (outside the supported subset): "
                  f"{v['rule']}")
        elif not ok:
            yield path, f"{v.get('message') or 'failed rule: ' + v['rule']} (CEL: {v['rule']})"
    if isinstance(obj, dict):
        for name, sub in (schema.get('properties') or {}).items():
            if name in obj:
                yield from cel_errors(sub, obj[name], path + (name,))
        if isinstance(schema.get('additionalProperties'), dict):
            for name, val in obj.items():
                if name not in (schema.get('properties') or {}):
                    yield from cel_errors(schema['additionalProperties'], val, path + (name,))
    elif isinstance(obj, list) and isinstance(schema.get('items'), dict):
        for i, val in enumerate(obj):
            yield from cel_errors(schema['items'], val, path + (i,))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--crds', action='append', default=[])
    ap.add_argument('--strict', action='store_true')
    ap.add_argument('--expect', type=int, help='exact number of custom resources that must have been validated')
    ap.add_argument('inputs', nargs='+')
    a = ap.parse_args()
    docs = list(load_docs(a.inputs))
    crds = [d for d in list(load_docs(a.crds)) + docs if d.get('kind') == 'CustomResourceDefinition']
    schemas = {}
    for c in crds:
        g, kind = c['spec']['group'], c['spec']['names']['kind']
        for v in c['spec']['versions']:
            sch = (v.get('schema') or {}).get('openAPIV3Schema') or {}
            schemas[(f"{g}/{v['name']}", kind)] = (strictify(sch) if a.strict else sch, sch)
    bad = seen = 0
    for d in docs:
        key = (d.get('apiVersion'), d.get('kind'))
        if d.get('kind') == 'CustomResourceDefinition' or key not in schemas:
            continue
        seen += 1
        name = f"{d['kind']}/{d.get('metadata', {}).get('name')}"
        schema, raw = schemas[key]
        errs = [('.'.join(map(str, e.path)) or '<root>', e.message)
                for e in sorted(jsonschema.Draft202012Validator(schema).iter_errors(d), key=lambda e: list(e.path))]
        errs += [('.'.join(map(str, p)) or '<root>', msg) for p, msg in cel_errors(raw, d)]
        for where, msg in errs:
            print(f"ERROR {name}: {where}: {msg}")
        bad += bool(errs)
        if not errs:
            print(f"INFO {name} valid against CRD schema {key[0]}")
    if a.expect is not None and seen != a.expect:
        print(f"ERROR validated {seen} custom resources, expected {a.expect}")
        return 1
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
