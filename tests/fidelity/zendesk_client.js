// The Zendesk simulator driven by node-zendesk, the npm client real users run (issue 24):
// each case asserts what the client saw against what Zendesk itself answers.
//
// Run by tests/fidelity/run, which installs the pinned node-zendesk and sets NODE_PATH and
// REVSYNC_BIN. Prints one `ok <case>` line per case; the first mismatch exits non-zero.
'use strict';

const { spawn } = require('node:child_process');
const readline = require('node:readline');
const { createClient } = require('node-zendesk');

const sims = [];
function stopSims() {
  for (const p of sims) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
}
process.on('exit', stopSims);

/** Starts `revsync sim zendesk` and reads its base URL and credentials (as simproc.py). */
function startSim({ people = 0, rateLimit } = {}) {
  const args = ['sim', 'zendesk', '--people', String(people)];
  if (rateLimit !== undefined) args.push('--rate-limit', String(rateLimit));
  const proc = spawn(process.env.REVSYNC_BIN || 'revsync', args, {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  sims.push(proc);
  return new Promise((resolve, reject) => {
    const lines = [];
    const rl = readline.createInterface({ input: proc.stdout });
    proc.on('exit', (code) => reject(new Error(`revsync sim zendesk exited (${code}): ${lines}`)));
    rl.on('line', (line) => {
      lines.push(line);
      if (!line.startsWith('Ctrl-C')) return;
      const text = lines.join('\n');
      const value = (key) => {
        const m = text.match(new RegExp(`\\b${key}: (\\S+)`));
        if (!m) throw new Error(`${key} not in: ${text}`);
        return m[1];
      };
      rl.close();
      resolve({ url: value('simulator'), email: value('email'), token: value('token') });
    });
  });
}

function ok(name) {
  console.log(`ok ${name}`);
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

/** node-zendesk configured as a user would, pointed at the simulator. `query` is added to
 * every request (the client's own option: its lists otherwise always ask for 100 a page).
 * node-zendesk has no retry of its own: a 429 comes back to the caller at once. */
function client(sim, query) {
  return createClient({
    username: sim.email,
    token: sim.token,
    endpointUri: sim.url,
    throwOriginalException: true,
    ...(query ? { query } : {}),
  });
}

/** The error a call threw (node-zendesk's: `statusCode`, the body as `result`). */
async function failure(promise) {
  try {
    const got = await promise;
    throw new Error(`expected an error answer, got ${JSON.stringify(got.result)}`);
  } catch (e) {
    if (e.statusCode === undefined) throw e;
    return e;
  }
}

const run = Date.now().toString(36);

async function main() {
  const [sim, limited] = await Promise.all([startSim(), startSim({ rateLimit: 3 })]);
  const zd = client(sim);

  // create (single): 201 with the user, email kept as Zendesk keeps it (trimmed, lower case).
  const created = await zd.users.create({
    user: { name: 'Ada Lovelace', email: ` Ada.${run}@Example.com `, external_id: `ada-${run}` },
  });
  const ada = created.result;
  check(created.response.status === 201, `POST /users: Zendesk answers 201, got ${created.response.status}`);
  check(Number.isInteger(ada.id), `a user's id is a number, got ${JSON.stringify(ada.id)}`);
  check(ada.email === `ada.${run}@example.com`, `email is trimmed and lower-cased, got ${ada.email}`);
  check(ada.role === 'end-user' && ada.active === true, `a new user is an active end-user: ${JSON.stringify(ada)}`);
  check(ada.url === `${sim.url}/users/${ada.id}.json`, `url is the absolute .json URL, got ${ada.url}`);
  check(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(ada.created_at), `created_at is ISO 8601 UTC, got ${ada.created_at}`);
  const org = (await zd.organizations.create({ organization: { name: `Acme ${run}`, external_id: `acme-${run}` } })).result;
  check(Number.isInteger(org.id) && org.name === `Acme ${run}`, `organization created: ${JSON.stringify(org)}`);
  ok('create single');

  // create (batch): users/create_many queues a job; the client polls job_statuses until done.
  const batch = Array.from({ length: 23 }, (_, i) => ({
    name: `Batch ${i}`,
    email: `batch${i}.${run}@example.com`,
    external_id: `batch-${i}-${run}`,
  }));
  const queued = (await zd.users.createMany({ users: batch })).result.job_status;
  check(queued && queued.status === 'queued' && queued.total === batch.length,
    `create_many answers a queued job_status of ${batch.length}: ${JSON.stringify(queued)}`);
  check(queued.url === `${sim.url}/job_statuses/${queued.id}.json`, `job url is absolute: ${queued.url}`);
  const done = await zd.jobstatuses.watch(queued.id, 50, 5);
  check(done.status === 'completed' && done.progress === batch.length,
    `the job completes with progress ${batch.length}: ${JSON.stringify(done)}`);
  check(done.results.length === batch.length && done.results.every((r, i) => r.index === i && Number.isInteger(r.id)),
    `create_many results are {index, id} per user: ${JSON.stringify(done.results)}`);
  const batchIds = done.results.map((r) => r.id);
  ok('create batch');

  // read by id
  const shown = (await zd.users.show(batchIds[4])).result;
  check(shown.id === batchIds[4] && shown.email === batch[4].email && shown.name === batch[4].name,
    `GET /users/{id} gives the user the job created: ${JSON.stringify(shown)}`);
  const orgShown = (await zd.organizations.show(org.id)).result;
  check(orgShown.external_id === `acme-${run}`, `GET /organizations/{id}: ${JSON.stringify(orgShown)}`);
  ok('read by id');

  // update: 200 with the whole user, the change applied and nothing else lost.
  const updated = await zd.users.update(ada.id, { user: { name: 'Ada King', phone: '+441234567' } });
  check(updated.response.status === 200, `PUT /users/{id} answers 200, got ${updated.response.status}`);
  const u = updated.result;
  check(u.name === 'Ada King' && u.phone === '+441234567' && u.email === ada.email && u.external_id === ada.external_id,
    `the update is applied and the rest kept: ${JSON.stringify(u)}`);
  check(u.updated_at >= ada.updated_at, `updated_at moves forward: ${ada.updated_at} -> ${u.updated_at}`);
  ok('update');

  // upsert: users/create_or_update finds the user by external id (any case) or else by email
  // (any case, trimmed); 201 when it created one, 200 when it updated one.
  const fresh = await zd.users.createOrUpdate({
    user: { name: 'Grace Hopper', email: `grace.${run}@example.com`, external_id: `Grace-${run}` },
  });
  check(fresh.response.status === 201, `create_or_update of a new user answers 201, got ${fresh.response.status}`);
  const byExt = await zd.users.createOrUpdate({ user: { external_id: `grace-${run}`, name: 'Grace B. Hopper' } });
  check(byExt.response.status === 200 && byExt.result.id === fresh.result.id,
    `create_or_update matches the external id whatever its case (200, same id): ${byExt.response.status} ${JSON.stringify(byExt.result)}`);
  check(byExt.result.external_id === `grace-${run}`,
    `the external id takes the case it was found by: ${byExt.result.external_id}`);
  check(byExt.result.email === `grace.${run}@example.com`, `an upsert without email keeps it: ${byExt.result.email}`);
  const byEmail = await zd.users.createOrUpdate({ user: { email: ` GRACE.${run}@example.com`, notes: 'by email' } });
  check(byEmail.response.status === 200 && byEmail.result.id === fresh.result.id && byEmail.result.notes === 'by email',
    `create_or_update matches the email (trimmed, any case): ${byEmail.response.status} ${JSON.stringify(byEmail.result)}`);
  const location = byEmail.response.headers.get('location');
  check(location && location.endsWith(`/api/v2/users/${fresh.result.id}.json`),
    `create_or_update answers with Location: /api/v2/users/{id}.json, got ${location}`);
  ok('upsert by external id');

  // list across pages: every user exactly once, cursor paging (node-zendesk's own way for
  // /users, here 7 a page) and offset paging (following next_page).
  const all = new Set([ada.id, fresh.result.id, ...batchIds]);
  const small = client(sim, { page: { size: 7 } }).users;
  const pages = [];
  small.on('debug::request', (e) => pages.push(e.detail.uri));
  const listed = await small.list();
  const seen = listed.map((x) => x.id);
  check(seen.length === all.size && new Set(seen).size === all.size && seen.every((id) => all.has(id)),
    `cursor paging gives each of the ${all.size} users once, got ${seen.length}: ${seen}`);
  check(pages.length === Math.ceil(all.size / 7) && pages.every((p) => p.includes('page%5Bsize%5D=7') || p.includes('page[size]=7')),
    `cursor paging of ${all.size} at 7 a page takes ${Math.ceil(all.size / 7)} requests: ${pages}`);
  const offset = await zd.users.requestAll('GET', `${sim.url}/users.json?per_page=5`);
  const offsetIds = offset.map((x) => x.id);
  check(offsetIds.length === all.size && new Set(offsetIds).size === all.size && offsetIds.every((id) => all.has(id)),
    `offset paging gives each of the ${all.size} users once, got ${offsetIds}`);
  ok('list across pages');

  // search: the Search API by type and email, and by free text; /users/search as the client
  // calls it (offset paging, 6 a page here); search/export (cursor paging).
  const hit = (await zd.search.query(`type:user email:batch7.${run}@example.com`)).result;
  check(hit.length === 1 && hit[0].id === batchIds[7] && hit[0].result_type === 'user',
    `search type:user email: finds the one user with result_type user: ${JSON.stringify(hit)}`);
  const six = client(sim, { per_page: 6 });
  const text = await six.search.queryAll(`type:user Batch`);
  check(text.length === batch.length && new Set(text.map((x) => x.id)).size === batch.length,
    `free-text search over pages of 6 finds the ${batch.length} batch users once each, got ${text.length}`);
  const found = await six.users.search({ query: `Batch` });
  check(found.length === batch.length && found.every((x) => batchIds.includes(x.id)),
    `GET /users/search?query= finds the ${batch.length} batch users, got ${found.length}`);
  const byExternal = await zd.users.search({ external_id: `batch-3-${run}` });
  check(byExternal.length === 1 && byExternal[0].id === batchIds[3],
    `GET /users/search?external_id= finds the user: ${JSON.stringify(byExternal)}`);
  const exported = await zd.search.exportResults('Batch', 'user', 5);
  check(exported.length === batch.length && exported.every((x, i) => x.id === batchIds[i]),
    `search/export pages by cursor (5 a page) through the ${batch.length} batch users once each, oldest first, got ${exported.map((x) => x.id)}`);
  ok('search');

  // 404: the client's error carries Zendesk's RecordNotFound body.
  const missing = await failure(zd.users.show(999999999));
  check(missing.statusCode === 404, `a missing user is a 404, got ${missing.statusCode}`);
  check(missing.result && missing.result.error === 'RecordNotFound' && missing.result.description === 'Not found',
    `404 body is {"error":"RecordNotFound","description":"Not found"}, got ${JSON.stringify(missing.result)}`);
  ok('404');

  // 422 RecordInvalid with `details`: an email another user has, a user without a name, an
  // organization name taken.
  const dup = await failure(zd.users.create({ user: { name: 'Copy', email: ada.email.toUpperCase() } }));
  check(dup.statusCode === 422, `a taken email is a 422, got ${dup.statusCode}`);
  const dupDetail = dup.result && dup.result.details && dup.result.details.email && dup.result.details.email[0];
  check(dup.result.error === 'RecordInvalid' && dup.result.description === 'Record validation errors' &&
    dupDetail && dupDetail.error === 'DuplicateValue' && /already being used/.test(dupDetail.description),
  `422 body is RecordInvalid with details.email[0].error DuplicateValue, got ${JSON.stringify(dup.result)}`);
  const nameless = await failure(zd.users.create({ user: { email: `nameless.${run}@example.com` } }));
  const nameDetail = nameless.result && nameless.result.details && nameless.result.details.name && nameless.result.details.name[0];
  check(nameless.statusCode === 422 && nameless.result.error === 'RecordInvalid' && nameDetail &&
    nameDetail.error === 'ValueTooShort' && /Name: +is too short/.test(nameDetail.description),
  `a user without a name is a 422 RecordInvalid with details.name[0].error ValueTooShort, got ${nameless.statusCode} ${JSON.stringify(nameless.result)}`);
  const dupOrg = await failure(zd.organizations.create({ organization: { name: `acme ${run}` } }));
  const orgDetail = dupOrg.result && dupOrg.result.details && dupOrg.result.details.name && dupOrg.result.details.name[0];
  check(dupOrg.statusCode === 422 && dupOrg.result.error === 'RecordInvalid' && orgDetail && orgDetail.error === 'DuplicateValue',
    `a taken organization name is a 422 DuplicateValue, got ${dupOrg.statusCode} ${JSON.stringify(dupOrg.result)}`);
  ok('422 validation');

  // An endpoint Zendesk has that the simulator does not: Zendesk's 404 for an unknown
  // endpoint, so the gap shows.
  const gap = await failure(zd.views.list());
  check(gap.statusCode === 404 && gap.result && gap.result.error === 'InvalidEndpoint',
    `an endpoint the simulator lacks answers 404 InvalidEndpoint, got ${gap.statusCode} ${JSON.stringify(gap.result)}`);
  ok('not simulated');

  // 429: past the per-minute allowance Zendesk answers 429 with Retry-After. node-zendesk
  // does not retry: it hands back (without throwing) an Error with statusCode 429.
  const lz = client(limited);
  let throttled = null;
  for (let i = 0; i < 6 && !throttled; i++) {
    const answer = await lz.users.show(999999999).catch((e) => e);
    if (answer && answer.result instanceof Error) throttled = answer;
    else check(answer.statusCode === 404, `under the allowance the answer is the 404: ${answer}`);
  }
  check(throttled, 'a 4th request within the minute at --rate-limit 3 is refused with 429');
  check(throttled.result.statusCode === 429 && throttled.response.status === 429,
    `the refusal is a 429, got ${throttled.response.status}`);
  const retryAfter = Number(throttled.response.headers.get('retry-after'));
  check(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60,
    `429 carries Retry-After in seconds within the minute, got ${throttled.response.headers.get('retry-after')}`);
  ok('429 rate limit');
}

const started = Date.now();
main().then(
  () => {
    console.log(`zendesk fidelity: ${((Date.now() - started) / 1000).toFixed(1)}s`);
    stopSims();
  },
  (e) => {
    console.error(`FAILED: ${e.stack || e}`);
    process.exitCode = 1;
    stopSims();
  },
);
