// A Fedify actor on loopback that checks a real attestd node the way a production
// Fedify server would (driven by tests/interop/test_fedify.py).
//
//   node peer.mjs PORT
//
// It serves the actor "alice" (RSA key for HTTP signatures, Ed25519 Multikey for object
// proofs) with Fedify's own dispatchers and inbox, and a small control API under /_test/
// that the Python test calls. Every check reports what Fedify said; nothing here
// re-implements what Fedify does, except building an attestation document (Fedify's
// vocabulary has no Attestation type), whose proof is then checked with Fedify's verifyProof.
import { AsyncLocalStorage } from "node:async_hooks";
import { createServer } from "node:http";
import { Buffer } from "node:buffer";
import serialize from "json-canon";
import { configure, getConsoleSink } from "@logtape/logtape";
import {
  createFederation,
  exportMultibaseKey,
  generateCryptoKeyPair,
  MemoryKvStore,
  signRequest,
  verifyProof,
} from "@fedify/fedify";
import {
  Accept,
  Create,
  DataIntegrityProof,
  Endpoints,
  Follow,
  isActor,
  lookupObject,
  Person,
} from "@fedify/vocab";

const port = Number(process.argv[2]);
const base = `http://127.0.0.1:${port}`;

// What Fedify logs about signatures and proofs is what the test prints when a step fails.
await configure({
  contextLocalStorage: new AsyncLocalStorage(),
  sinks: { console: getConsoleSink() },
  loggers: [
    { category: ["fedify", "sig"], lowestLevel: "debug", sinks: ["console"] },
    { category: ["fedify", "federation"], lowestLevel: "info", sinks: ["console"] },
    { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["console"] },
  ],
});

const rsa = await generateCryptoKeyPair("RSASSA-PKCS1-v1_5");
const ed = await generateCryptoKeyPair("Ed25519");
const events = [];
const rawBodies = new Map(); // activity id -> the JSON as it arrived
const record = (step, ok, said, extra = {}) => {
  const ev = { step, ok, said, ...extra };
  events.push(ev);
  console.error(`[peer] ${step}: ${ok ? "ok" : "FAILED"}: ${said}`);
  return ev;
};

const federation = createFederation({ kv: new MemoryKvStore(), allowPrivateAddress: true });

federation
  .setActorDispatcher("/users/{identifier}", async (ctx, identifier) => {
    if (identifier !== "alice") return null;
    const keys = await ctx.getActorKeyPairs(identifier);
    return new Person({
      id: ctx.getActorUri(identifier),
      preferredUsername: identifier,
      name: "Alice (Fedify)",
      inbox: ctx.getInboxUri(identifier),
      endpoints: new Endpoints({ sharedInbox: ctx.getInboxUri() }),
      publicKey: keys[0].cryptographicKey,
      assertionMethods: keys.map((k) => k.multikey),
    });
  })
  .setKeyPairsDispatcher(async (_ctx, identifier) => identifier === "alice" ? [rsa, ed] : []);

federation
  .setInboxListeners("/users/{identifier}/inbox", "/inbox")
  .on(Follow, async (ctx, follow) => {
    // Fedify calls listeners only for activities whose HTTP signature it verified.
    const follower = await follow.getActor(ctx);
    if (!isActor(follower)) {
      record("follow_received", false, "the Follow's actor is not an actor");
      return;
    }
    record("follow_received", true, `verified Follow from ${follower.id.href}`);
    await ctx.sendActivity({ identifier: "alice" }, follower, new Accept({
      id: new URL(`${base}/accepts/${crypto.randomUUID()}`),
      actor: ctx.getActorUri("alice"),
      object: follow,
    }));
  })
  .on(Accept, async (_ctx, accept) => {
    record("accept_received", true,
      `verified the HTTP signature of Accept ${accept.id?.href} from ${accept.actorId?.href}`);
  })
  .on(Create, async (ctx, create) => {
    const raw = rawBodies.get(create.id?.href);
    const obj = raw?.object;
    if (!obj || typeof obj !== "object" || !obj.proof) {
      record("attestation_proof", false, "the Create carries no object with a proof");
      return;
    }
    await checkProof(ctx, obj, "attestation_proof");
  })
  .onError((_ctx, error) => {
    record("inbox_error", false, String(error?.stack ?? error));
  });

async function checkProof(ctx, obj, step) {
  const loader = { documentLoader: ctx.documentLoader, contextLoader: ctx.contextLoader };
  try {
    const proof = await DataIntegrityProof.fromJsonLd(
      { "@context": obj["@context"], ...obj.proof }, loader);
    const key = await verifyProof(obj, proof, loader);
    if (key == null) {
      return record(step, false,
        `verifyProof returned null for ${obj.id} (key ${proof.verificationMethodId?.href}): ` +
        "Fedify found no Multikey for it or the signature does not match", { object: obj });
    }
    return record(step, true, `verifyProof accepted ${obj.id} with key ${key.id?.href}`);
  } catch (error) {
    return record(step, false, `verifyProof threw: ${error}`, { object: obj });
  }
}

// docs/attestation-fep.md's test vector, checked by Fedify: the issuer's actor document is
// served from memory (node.example does not exist), the rest as Fedify loads it.
async function checkVector(ctx, { signed, actor }) {
  const documentLoader = async (url, options) => {
    if (url.split("#")[0] === actor.id) return { contextUrl: null, documentUrl: url, document: actor };
    return await ctx.documentLoader(url, options);
  };
  return await checkProof({ ...ctx, documentLoader }, signed, "fep_vector_proof");
}

async function followNode(ctx, target) {
  const loader = { documentLoader: ctx.documentLoader, contextLoader: ctx.contextLoader };
  const actor = await lookupObject(target, loader);
  if (!isActor(actor)) return record("lookup_node", false, `${target} is not an actor`);
  const am = [];
  for await (const k of actor.getAssertionMethods(loader)) am.push(k.id?.href);
  record("lookup_node", am.length > 0,
    `Fedify read the node's actor; assertionMethods: ${JSON.stringify(am)}`);
  await ctx.sendActivity({ identifier: "alice" }, actor, new Follow({
    id: new URL(`${base}/follows/${crypto.randomUUID()}`),
    actor: ctx.getActorUri("alice"),
    object: actor.id,
  }));
  return record("follow_sent", true, `sent a signed Follow to ${actor.inboxId?.href}`);
}

async function pageOutbox(ctx, outbox) {
  const unsigned = await fetch(outbox, { headers: { Accept: "application/activity+json" } });
  record("outbox_unsigned", unsigned.status === 401 || unsigned.status === 403,
    `an unsigned GET of the outbox got ${unsigned.status}`);
  const loader = await ctx.getDocumentLoader({ identifier: "alice" });
  const items = [];
  let said = "";
  try {
    const summary = (await loader(outbox)).document;
    let next = summary.first;
    for (let pages = 0; next && pages < 20; pages++) {
      const page = (await loader(typeof next === "string" ? next : next.id)).document;
      items.push(...(page.orderedItems ?? []));
      next = page.next;
    }
    said = `signed GETs paged the outbox: ${items.length} item(s)`;
  } catch (error) {
    return record("outbox_signed", false, `a signed GET of the outbox failed: ${error}`);
  }
  const att = items.map((a) => a.object).find((o) => o && typeof o === "object" && o.proof);
  if (!att) return record("outbox_signed", false, `${said}, none with a proof`);
  record("outbox_signed", true, said);
  // What a peer backfilling from the outbox checks: the proof, once more.
  return await checkProof(ctx, { "@context": items[0]["@context"], ...att }, "outbox_proof");
}

// An attestation as the node's format defines it, signed in the W3C eddsa-jcs-2022 form
// exactly as Fedify's createProof signs (proof configuration with the document's
// @context), then checked with Fedify's verifyProof before it is sent.
async function attest(ctx, { sha256, inbox, label }) {
  const actor = ctx.getActorUri("alice").href;
  const keys = await ctx.getActorKeyPairs("alice");
  const edKey = keys.find((k) => k.privateKey.algorithm.name === "Ed25519");
  const context = [
    "https://www.w3.org/ns/activitystreams",
    "https://w3id.org/security/data-integrity/v2",
    {
      attestd: "https://attestd.org/ns/v1#",
      Attestation: "attestd:Attestation",
      sha256: "attestd:sha256",
      label: "attestd:label",
      method: "attestd:method",
    },
  ];
  const doc = {
    "@context": context,
    id: `${base}/attestations/${crypto.randomUUID()}`,
    type: ["Object", "Attestation"],
    attributedTo: actor,
    published: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    sha256,
    label,
    method: "human_review",
    to: [`${actor}/followers`],
  };
  const config = {
    "@context": context,
    type: "DataIntegrityProof",
    cryptosuite: "eddsa-jcs-2022",
    verificationMethod: edKey.multikey.id.href,
    proofPurpose: "assertionMethod",
    created: doc.published,
  };
  const enc = new TextEncoder();
  const hash = async (v) => new Uint8Array(await crypto.subtle.digest("SHA-256", enc.encode(serialize(v))));
  const data = new Uint8Array(64);
  data.set(await hash(config), 0);
  data.set(await hash(doc), 32);
  const sig = new Uint8Array(await crypto.subtle.sign("Ed25519", edKey.privateKey, data));
  const { "@context": _c, ...proofOptions } = config;
  const signed = { ...doc, proof: { ...proofOptions, proofValue: base58btc(sig) } };
  const self = await checkProof(ctx, signed, "own_attestation_proof");
  if (!self.ok) return self;
  const create = {
    "@context": context,
    id: `${base}/creates/${crypto.randomUUID()}`,
    type: "Create",
    actor,
    object: signed,
    to: [`${actor}/followers`],
  };
  const body = JSON.stringify(create);
  const rsaKey = keys.find((k) => k.privateKey.algorithm.name === "RSASSA-PKCS1-v1_5");
  const request = await signRequest(new Request(inbox, {
    method: "POST",
    headers: { "Content-Type": "application/activity+json", Accept: "application/activity+json" },
    body,
  }), rsaKey.privateKey, rsaKey.keyId, { spec: "draft-cavage-http-signatures-12", body: enc.encode(body) });
  const answer = await fetch(request);
  const text = await answer.text();
  return record("attestation_delivered", answer.status === 202,
    `the node answered ${answer.status} to a Fedify-signed Create: ${text.slice(0, 300)}`,
    { attestation: signed.id });
}

function base58btc(bytes) {
  const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
  let n = BigInt("0x" + (Buffer.from(bytes).toString("hex") || "0"));
  let out = "";
  while (n > 0n) { out = alphabet[Number(n % 58n)] + out; n /= 58n; }
  for (const b of bytes) { if (b !== 0) break; out = "1" + out; }
  return "z" + out;
}

async function control(req, url, body) {
  const ctx = federation.createContext(new URL(base), undefined);
  const args = body ? JSON.parse(body) : {};
  switch (url.pathname) {
    case "/_test/events": return events;
    case "/_test/keys":
      return { actor: ctx.getActorUri("alice").href,
        ed25519: await exportMultibaseKey(ed.publicKey) };
    case "/_test/follow": return await followNode(ctx, args.target);
    case "/_test/outbox": return await pageOutbox(ctx, args.outbox);
    case "/_test/attest": return await attest(ctx, args);
    case "/_test/vector": return await checkVector(ctx, args);
    default: return null;
  }
}

const server = createServer(async (req, res) => {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const body = Buffer.concat(chunks);
  const url = new URL(req.url, base);
  try {
    if (url.pathname.startsWith("/_test/")) {
      const out = await control(req, url, body.toString("utf8"));
      res.writeHead(out == null ? 404 : 200, { "Content-Type": "application/json" });
      res.end(JSON.stringify(out));
      return;
    }
    if (req.method === "POST") {
      try {
        const parsed = JSON.parse(body.toString("utf8"));
        if (typeof parsed?.id === "string") rawBodies.set(parsed.id, parsed);
      } catch { /* Fedify answers malformed bodies itself */ }
    }
    const request = new Request(url, {
      method: req.method,
      headers: Object.entries(req.headers).flatMap(([k, v]) =>
        Array.isArray(v) ? v.map((x) => [k, x]) : [[k, v]]),
      body: req.method === "GET" || req.method === "HEAD" ? undefined : body,
    });
    const response = await federation.fetch(request, { contextData: undefined });
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(Buffer.from(await response.arrayBuffer()));
  } catch (error) {
    console.error("[peer] request failed:", error);
    res.writeHead(500);
    res.end(String(error));
  }
});
server.listen(port, "127.0.0.1", () => console.error(`[peer] listening on ${base}`));
