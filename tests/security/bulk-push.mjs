// Pushes many small manifests fast (8 requests at a time), for the checks
// of tests/security/parts/bounds.sh that need a registry holding a lot:
// referrers of one subject, repositories, tags of one manifest. Manifests
// reference the empty config blob `{}`, which the caller pushes first (or
// the registry accepts sparse manifests).
//
// Usage: node bulk-push.mjs BASE_URL referrers REPO SUBJECT_DIGEST COUNT
//        node bulk-push.mjs BASE_URL repos PREFIX COUNT
//        node bulk-push.mjs BASE_URL tags REPO COUNT
// Prints the digests pushed (referrers) or nothing; exits 1 on any answer
// other than 201.
import { createHash } from 'node:crypto';

const [base, mode, ...args] = process.argv.slice(2);
const EMPTY = {
  mediaType: 'application/vnd.oci.empty.v1+json',
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2,
  data: 'e30=',
};
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

function manifest(extra) {
  return JSON.stringify({ schemaVersion: 2, mediaType: MANIFEST, config: EMPTY, layers: [EMPTY], ...extra });
}

const digestOf = (body) => 'sha256:' + createHash('sha256').update(body).digest('hex');

async function put(path, body) {
  const res = await fetch(base + path, { method: 'PUT', headers: { 'content-type': MANIFEST }, body });
  await res.arrayBuffer();
  if (res.status !== 201) throw new Error(`PUT ${path}: ${res.status}`);
  return digestOf(body);
}

async function inParallel(count, work) {
  const results = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      results[i] = await work(i);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return results;
}

let pushed = [];
if (mode === 'referrers') {
  const [repo, subject, count] = args;
  const subjectDescriptor = { mediaType: MANIFEST, digest: subject, size: 2 };
  // Two artifact types, alternating, for the artifactType filter.
  pushed = await inParallel(Number(count), (i) => {
    const body = manifest({ artifactType: `application/vnd.example.kind-${i % 2 ? 'b' : 'a'}`,
      subject: subjectDescriptor, annotations: { n: String(i) } });
    return put(`/v2/${repo}/manifests/${digestOf(body)}`, body);
  });
} else if (mode === 'repos') {
  const [prefix, count] = args;
  await inParallel(Number(count), (i) => put(`/v2/${prefix}${String(i).padStart(5, '0')}/manifests/latest`, manifest({})));
} else if (mode === 'tags') {
  const [repo, count] = args;
  const body = manifest({ annotations: { many: 'tags' } });
  await inParallel(Number(count), (i) => put(`/v2/${repo}/manifests/t${String(i).padStart(5, '0')}`, body));
} else {
  console.error('usage: bulk-push.mjs BASE_URL referrers|repos|tags ...');
  process.exit(2);
}
for (const digest of pushed) console.log(digest);
