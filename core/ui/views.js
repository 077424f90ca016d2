// The UI's pages, each a function that fills <main> from pier's answers:
// the repository list, a repository's tags, an image (platforms, layers,
// config, referrers, pull commands), the admin panel and the sign-in form.
// Everything is built with the DOM and text nodes (never HTML from data), so
// a repository, tag or label can show nothing but itself.

import * as api from "./api.js";
import { formatBytes, sizeBar, timeline } from "./charts.js";

/** An element with attributes (`on*` functions become listeners) and children. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value == null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2), value);
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) if (child != null && child !== false) element.append(child);
  return element;
}

const shortDigest = (digest) => (digest ? digest.replace(/^(sha\d+):(.{12}).*$/, "$1:$2…") : "");
const repoHref = (name) => `#/r/${name}`;
const imageHref = (name, digest, tag) => `#/r/${name}/${digest}${tag ? `?tag=${encodeURIComponent(tag)}` : ""}`;

function when(ms) {
  if (!ms) return "—";
  const seconds = (Date.now() - ms) / 1000;
  const ago = [[86400 * 365, "year"], [86400 * 30, "month"], [86400, "day"], [3600, "hour"], [60, "minute"]].find(([s]) => seconds >= s);
  const text = ago ? `${Math.floor(seconds / ago[0])} ${ago[1]}${Math.floor(seconds / ago[0]) === 1 ? "" : "s"} ago` : "just now";
  return h("time", { datetime: new Date(ms).toISOString(), title: new Date(ms).toLocaleString() }, text);
}

function problem(error) {
  const text = error.status === 401 ? "Sign in to see this." : error.message;
  return h("p", { class: "problem", role: "alert" }, text);
}

/** Runs a page's loader, showing what went wrong instead of an empty page. */
async function guarded(main, load) {
  main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  try {
    await load();
  } catch (error) {
    main.replaceChildren(problem(error));
  }
}

// ------------------------------------------------------------------ repositories

export function repositoriesPage(main, { q = "" }) {
  return guarded(main, async () => {
    const list = h("ul", { class: "repos", "aria-label": "repositories" });
    const more = h("button", { type: "button", class: "more", hidden: true }, "More repositories");
    let next = "";
    const load = async (reset) => {
      const page = await api.repositories({ q: search.value.trim(), last: reset ? "" : next });
      if (reset) list.replaceChildren();
      for (const name of page.repositories) list.append(h("li", {}, h("a", { href: repoHref(name) }, name)));
      if (reset && page.repositories.length === 0) list.append(h("li", { class: "muted" }, "No repository you may pull matches."));
      next = page.next || "";
      more.hidden = !next;
    };
    const search = h("input", { type: "search", name: "q", value: q, placeholder: "Filter repositories by name", "aria-label": "filter repositories", autocomplete: "off" });
    let timer = 0;
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        history.replaceState(null, "", search.value.trim() ? `#/?q=${encodeURIComponent(search.value.trim())}` : "#/");
        load(true).catch((error) => list.replaceChildren(h("li", {}, problem(error))));
      }, 200);
    });
    more.addEventListener("click", () => load(false).catch((error) => list.append(h("li", {}, problem(error)))));
    await load(true);
    main.replaceChildren(h("h1", {}, "Repositories"), search, list, more);
    search.focus();
  });
}

// ------------------------------------------------------------------ one repository

function platformChips(platforms) {
  return h("span", { class: "chips" }, platforms.map((p) => h("span", { class: "chip" }, p.platform)));
}

export function repositoryPage(main, name) {
  return guarded(main, async () => {
    const first = await api.tags(name);
    const all = [...first.tags];
    const mayDelete = first.actions.includes("delete");
    const rows = h("tbody");
    const addRows = (tags) => {
      for (const tag of tags) rows.append(tagRow(name, tag, mayDelete));
    };
    addRows(first.tags);
    let next = first.next;
    const more = h("button", { type: "button", class: "more", hidden: !next }, "More tags");
    more.addEventListener("click", async () => {
      const page = await api.tags(name, next);
      all.push(...page.tags);
      addRows(page.tags);
      next = page.next;
      more.hidden = !next;
      drawTimeline();
    });
    const history = h("section", { class: "history" });
    const drawTimeline = () => {
      const chart = timeline(all);
      history.replaceChildren(h("h2", {}, "Tag history"), chart || h("p", { class: "muted" }, "No push times recorded."));
    };
    drawTimeline();
    const table = h(
      "table",
      { class: "tags" },
      h("thead", {}, h("tr", {}, ["Tag", "Digest", "Size", "Platforms", "Pushed", "Last pull", "", ""].map((t) => h("th", { scope: "col" }, t)))),
      rows,
    );
    // The command offered: `latest`, else the tag pushed last.
    const newest = [...first.tags].sort((a, b) => (b.pushed_ms || 0) - (a.pushed_ms || 0))[0];
    const latest = first.tags.find((t) => t.tag === "latest") || newest;
    main.replaceChildren(
      h("nav", { class: "crumbs" }, h("a", { href: "#/" }, "Repositories"), " / "),
      h("h1", {}, name),
      h("p", { class: "muted" }, `You may ${first.actions.join(", ") || "nothing"} here.`),
      first.tags.length ? table : h("p", { class: "muted" }, "No tags."),
      more,
      history,
      latest ? pullCommands(name, latest.tag, null) : "",
    );
  });
}

// "verified" where the namespace requires signatures and a required key
// signed (the server checked it, as a pull does); "unverified" where it
// requires them and none did; else "signed" when a signature is stored.
function signedBadge(tag) {
  if (tag.signed_by) {
    return h("span", { class: "badge signed", title: `signed by ${tag.signed_by}, a key the namespace requires` }, "verified");
  }
  if (tag.signed_by === null) {
    return h("span", { class: "badge", title: "the namespace requires a signature by its keys; none verifies" }, "unverified");
  }
  return tag.signed ? h("span", { class: "badge signed", title: "a signature of this manifest is stored" }, "signed") : "";
}

function tagRow(name, tag, mayDelete) {
  const row = h(
    "tr",
    { "data-tag": tag.tag },
    h("td", {}, h("a", { href: imageHref(name, tag.digest, tag.tag), class: "tag" }, tag.tag)),
    h("td", {}, h("code", { title: tag.digest }, shortDigest(tag.digest))),
    h("td", { class: "num" }, formatBytes(tag.size)),
    h("td", {}, platformChips(tag.platforms)),
    h("td", {}, when(tag.pushed_ms)),
    h("td", {}, tag.last_pull ? when(Date.parse(tag.last_pull)) : "—"),
    h("td", {}, signedBadge(tag)),
    h("td", {}, mayDelete ? deleteButton(name, tag.tag) : ""),
  );
  return row;
}

/** Deletes in two clicks: the first asks, the second deletes. */
function deleteButton(name, tag) {
  const button = h("button", { type: "button", class: "danger", "data-action": "delete" }, "Delete");
  let armed = false;
  button.addEventListener("click", async () => {
    if (!armed) {
      armed = true;
      button.textContent = `Delete ${tag}?`;
      button.dataset.action = "confirm-delete";
      return;
    }
    button.disabled = true;
    try {
      await api.deleteTag(name, tag);
      button.closest("tr").remove();
    } catch (error) {
      button.replaceWith(problem(error));
    }
  });
  return button;
}

// ------------------------------------------------------------------ pull commands

/** Copyable pull commands for docker, podman, crane and skopeo, for the host this page came from. */
function pullCommands(name, tag, digest) {
  const host = location.host;
  const plain = location.protocol === "http:";
  const ref = digest ? `${host}/${name}@${digest}` : `${host}/${name}:${tag}`;
  const file = name.split("/").pop();
  const commands = [
    ["docker", `docker pull ${ref}`],
    ["podman", `podman pull ${plain ? "--tls-verify=false " : ""}${ref}`],
    ["crane", `crane pull ${plain ? "--insecure " : ""}${ref} ${file}.tar`],
    ["skopeo", `skopeo copy ${plain ? "--src-tls-verify=false " : ""}docker://${ref} oci:${file}`],
  ];
  const status = h("span", { class: "copied", role: "status" });
  return h(
    "section",
    { class: "pull" },
    h("h2", {}, "Pull"),
    h(
      "ul",
      { class: "commands" },
      commands.map(([tool, command]) =>
        h(
          "li",
          {},
          h("span", { class: "tool" }, tool),
          h("code", { class: "command" }, command),
          h("button", {
            type: "button",
            class: "copy",
            "data-tool": tool,
            onclick: async () => {
              try {
                await navigator.clipboard.writeText(command);
                status.textContent = `Copied the ${tool} command.`;
              } catch {
                status.textContent = "The browser refused the clipboard: select the command instead.";
              }
            },
          }, "Copy"),
        ),
      ),
    ),
    status,
  );
}

// ------------------------------------------------------------------ one image

export function imagePage(main, name, digest, tag) {
  return guarded(main, async () => {
    const { json } = await api.manifest(name, digest);
    const parts = [
      h("nav", { class: "crumbs" }, h("a", { href: "#/" }, "Repositories"), " / ", h("a", { href: repoHref(name) }, name), " / "),
      h("h1", {}, tag ? `${name}:${tag}` : name, " ", h("code", { class: "digest", title: digest }, shortDigest(digest))),
      h("p", { class: "muted" }, json.mediaType || "", json.artifactType ? ` — artifact ${json.artifactType}` : ""),
      json.subject ? h("p", { class: "subject" }, `${kindOf(json.artifactType)} of `, h("a", { href: imageHref(name, json.subject.digest) }, h("code", {}, shortDigest(json.subject.digest)))) : "",
    ];
    if (Array.isArray(json.manifests)) parts.push(await indexSection(name, json));
    else parts.push(...(await imageSections(name, json)));
    parts.push(await referrersSection(name, digest), pullCommands(name, tag, tag ? null : digest));
    main.replaceChildren(...parts);
  });
}

async function indexSection(name, index) {
  const rows = await Promise.all(
    index.manifests.map(async (entry) => {
      const p = entry.platform || {};
      const platform = [p.os, p.architecture, p.variant].filter(Boolean).join("/") || "—";
      let size = null;
      try {
        const child = (await api.manifest(name, entry.digest)).json;
        size = (child.config ? child.config.size : 0) + (child.layers || []).reduce((s, l) => s + l.size, 0);
      } catch {
        size = null; // not here: a sparse index
      }
      return h(
        "tr",
        { "data-platform": platform },
        // (A platform's page pulls by digest: the tag names the whole index.)
        h("td", {}, h("a", { href: imageHref(name, entry.digest) }, platform)),
        h("td", {}, h("code", { title: entry.digest }, shortDigest(entry.digest))),
        h("td", { class: "num" }, formatBytes(size)),
      );
    }),
  );
  return h(
    "section",
    {},
    h("h2", {}, `Platforms (${index.manifests.length})`),
    h("table", { class: "platforms" }, h("thead", {}, h("tr", {}, h("th", {}, "Platform"), h("th", {}, "Digest"), h("th", {}, "Size"))), h("tbody", {}, rows)),
  );
}

async function imageSections(name, image) {
  const layers = (image.layers || []).map((layer, i) => ({ label: `layer ${i + 1}`, size: layer.size, layer }));
  const sections = [];
  const withConfig = image.config ? [{ label: "config", size: image.config.size }, ...layers] : layers;
  const total = withConfig.reduce((s, l) => s + l.size, 0);
  sections.push(
    h(
      "section",
      {},
      h("h2", {}, `Layers — ${formatBytes(total)}`),
      sizeBar(withConfig),
      h(
        "table",
        { class: "layers" },
        h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "Digest"), h("th", {}, "Media type"), h("th", {}, "Size"))),
        h("tbody", {}, layers.map((l, i) => h("tr", {}, h("td", {}, String(i + 1)), h("td", {}, h("code", { title: l.layer.digest }, shortDigest(l.layer.digest))), h("td", {}, l.layer.mediaType), h("td", { class: "num" }, formatBytes(l.size))))),
      ),
    ),
  );
  // What a signature's layers say about it (cosign: the signature, the
  // certificate or key bundle); not verified here.
  const annotated = layers.filter((l) => l.layer.annotations && Object.keys(l.layer.annotations).length);
  if (annotated.length) {
    sections.push(
      h(
        "section",
        { class: "layer-annotations" },
        h("h2", {}, "Layer annotations"),
        annotated.map((l) => [h("h3", {}, l.label), h("dl", { class: "annotations" }, Object.entries(l.layer.annotations).map(([k, v]) => [h("dt", {}, k), h("dd", {}, h("code", {}, v))]))]),
      ),
    );
  }
  const imageConfig = image.config && /image\.config|container\.image/.test(image.config.mediaType || "");
  if (imageConfig && image.config.size <= 1 << 20) {
    try {
      sections.push(configSection(await api.blobJson(name, image.config.digest)));
    } catch (error) {
      sections.push(h("section", {}, h("h2", {}, "Config"), problem(error)));
    }
  }
  return sections;
}

function definition(term, value) {
  if (value == null || value === "" || (Array.isArray(value) && value.length === 0)) return [];
  return [h("dt", {}, term), h("dd", {}, Array.isArray(value) ? h("code", {}, JSON.stringify(value)) : h("code", {}, String(value)))];
}

function configSection(config) {
  const run = config.config || {};
  const platform = [config.os, config.architecture, config.variant].filter(Boolean).join("/");
  const labels = Object.entries(run.Labels || {});
  return h(
    "section",
    { class: "config" },
    h("h2", {}, "Config"),
    h(
      "dl",
      {},
      definition("Platform", platform),
      definition("Created", config.created),
      definition("Entrypoint", run.Entrypoint),
      definition("Cmd", run.Cmd),
      definition("Working dir", run.WorkingDir),
      definition("User", run.User),
    ),
    (run.Env || []).length ? h("h3", {}, "Environment") : "",
    (run.Env || []).length ? h("ul", { class: "env" }, run.Env.map((e) => h("li", {}, h("code", {}, e)))) : "",
    labels.length ? h("h3", {}, "Labels") : "",
    labels.length ? h("dl", { class: "labels" }, labels.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])) : "",
    (config.history || []).length ? h("h3", {}, "History") : "",
    (config.history || []).length
      ? h("ol", { class: "history-steps" }, config.history.map((step) => h("li", { class: step.empty_layer ? "muted" : "" }, h("code", {}, step.created_by || step.comment || "(no command)"))))
      : "",
  );
}

// ------------------------------------------------------------------ referrers

const SIGNATURE_TYPES = ["application/vnd.dev.cosign.artifact.sig.v1+json", "application/vnd.dev.sigstore.bundle.v0.3+json", "application/vnd.cncf.notary.signature"];

function kindOf(artifactType = "") {
  if (SIGNATURE_TYPES.includes(artifactType)) return "signature";
  if (/spdx|cyclonedx|sbom|syft/i.test(artifactType)) return "SBOM";
  if (/in-toto|attestation|provenance|slsa|vex/i.test(artifactType)) return "attestation";
  return "artifact";
}

/** The referrers of `digest`, their referrers below them, to a few levels. */
async function referrerTree(name, digest, depth) {
  const found = await api.referrers(name, digest);
  const items = await Promise.all(
    found.map(async (ref) => {
      const kind = kindOf(ref.artifactType);
      const annotations = Object.entries(ref.annotations || {});
      const children = depth > 1 ? await referrerTree(name, ref.digest, depth - 1) : null;
      return h(
        "li",
        { class: `referrer ${kind.toLowerCase()}`, "data-kind": kind },
        h("span", { class: `badge ${kind === "signature" ? "signed" : ""}` }, kind),
        " ",
        h("a", { href: imageHref(name, ref.digest) }, h("code", {}, shortDigest(ref.digest))),
        " ",
        h("span", { class: "muted" }, ref.artifactType || ref.mediaType || ""),
        annotations.length ? h("dl", { class: "annotations" }, annotations.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])) : "",
        children && children.childElementCount ? children : "",
      );
    }),
  );
  return h("ul", { class: "tree" }, items);
}

async function referrersSection(name, digest) {
  const section = h("section", { class: "referrers" }, h("h2", {}, "Signatures, SBOMs and attestations"));
  try {
    const tree = await referrerTree(name, digest, 3);
    const sigTag = digest.replace(":", "-") + ".sig";
    if (await api.hasManifest(name, sigTag)) {
      tree.append(
        h(
          "li",
          { class: "referrer signature", "data-kind": "signature" },
          h("span", { class: "badge signed" }, "signature"),
          " ",
          h("a", { href: imageHref(name, await digestOfTag(name, sigTag), sigTag) }, h("code", {}, sigTag)),
          " ",
          h("span", { class: "muted" }, "cosign signature (tag form)"),
        ),
      );
    }
    section.append(tree.childElementCount ? tree : h("p", { class: "muted" }, "Nothing refers to this manifest."));
  } catch (error) {
    section.append(problem(error));
  }
  return section;
}

async function digestOfTag(name, tag) {
  const { digest } = await api.manifest(name, tag);
  return digest;
}

// ------------------------------------------------------------------ admin

export function adminPage(main) {
  return guarded(main, async () => {
    const [report, listed] = await Promise.all([api.gcReport(), api.events()]);
    const pending = listed && listed.filter((item) => !item.dead);
    const dead = listed && listed.filter((item) => item.dead);
    const gc = h("section", { class: "gc" }, h("h2", {}, "Last garbage collection"));
    if (!report) gc.append(h("p", { class: "muted" }, "No collection has finished yet."));
    else {
      const stored = Object.entries(report).find(([key]) => /stored|used/.test(key) && typeof report[key] === "number");
      gc.append(
        h(
          "dl",
          {},
          definition("Finished", new Date(report.finished_ms).toLocaleString()),
          definition("Took", `${(report.duration_ms / 1000).toFixed(2)} s in ${report.steps} steps${report.dry_run ? " (dry run)" : ""}`),
          definition("Examined", `${report.blobs_examined} blobs in ${report.repos_examined} repositories`),
          definition("Removed", `${report.blobs_deleted} blobs, ${report.manifests_deleted} manifests, ${report.tags_deleted} tags, ${report.uploads_expired} expired uploads`),
          definition("Freed", formatBytes((report.blob_bytes_freed || 0) + (report.orphan_bytes_freed || 0))),
          definition("Storage used", stored ? formatBytes(stored[1]) : "not in this report"),
        ),
      );
    }
    main.replaceChildren(h("h1", {}, "Admin"), gc, deliveries("Pending event deliveries", pending, false), deliveries("Failed event deliveries (dead)", dead, true));
  });
}

function deliveries(title, listed, dead) {
  const section = h("section", { class: "deliveries", "data-dead": String(dead) }, h("h2", {}, title));
  if (listed == null || listed.length === 0) {
    section.append(h("p", { class: "muted" }, listed ? "None." : "No webhook or replication rule is configured."));
    return section;
  }
  section.append(
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ["Target", "Event", "Attempts", "Next attempt", "Last error"].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        listed.map((item) => {
          const e = item.event || {};
          return h(
            "tr",
            {},
            h("td", {}, item.target || ""),
            h("td", {}, [e.action, e.repository, e.tag || shortDigest(e.digest), e.actor && `by ${e.actor}`].filter(Boolean).join(" ")),
            h("td", { class: "num" }, String(item.attempts ?? "")),
            h("td", {}, item.next_attempt_ms ? new Date(item.next_attempt_ms).toLocaleString() : "—"),
            h("td", {}, item.last_error || ""),
          );
        }),
      ),
    ),
  );
  return section;
}

// ------------------------------------------------------------------ sign-in

export function signInPage(main, onSignedIn) {
  const status = h("p", { class: "problem", role: "alert", hidden: true });
  const user = h("input", { name: "username", autocomplete: "username", required: true, "aria-label": "user name" });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true, "aria-label": "password" });
  const form = h(
    "form",
    { class: "signin" },
    h("h1", {}, "Sign in"),
    h("label", {}, "User or robot", user),
    h("label", {}, "Password or robot token", password),
    h("button", { type: "submit" }, "Sign in"),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.hidden = true;
    try {
      await api.signIn(user.value, password.value);
      onSignedIn();
    } catch (error) {
      status.textContent = error.status === 401 ? "Wrong user name or password." : error.message;
      status.hidden = false;
    }
  });
  main.replaceChildren(form);
  user.focus();
}
