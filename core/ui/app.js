// The UI's entry point: the header (who is signed in, sign in and out, the
// admin link) and hash routing, so every page has a link and pier keeps no
// state for it:
//   #/            repositories (#/?q=filter)
//   #/r/NAME      a repository's tags
//   #/r/NAME/DIGEST[?tag=TAG]   an image or index, its referrers
//   #/admin       the operator's panel
//   #/signin      the sign-in form

import * as api from "./api.js";
import { adminPage, h, imagePage, repositoriesPage, repositoryPage, signInPage } from "./views.js";

const main = document.getElementById("main");
const sessionBox = document.getElementById("session");
const nav = document.getElementById("nav");

/** `{path, params}` of the current hash. */
function currentRoute() {
  const hash = decodeURIComponent(location.hash.replace(/^#/, "")) || "/";
  const [path, query = ""] = hash.split("?");
  return { path, params: Object.fromEntries(new URLSearchParams(query)) };
}

async function header() {
  const auth = await api.discover();
  const current = api.session();
  const admin = await api.isAdmin().catch(() => false);
  nav.replaceChildren(h("a", { href: "#/" }, "Repositories"), admin ? h("a", { href: "#/admin" }, "Admin") : "");
  if (auth.open) {
    sessionBox.replaceChildren(h("span", { class: "muted", title: "this registry has no [auth]: everyone may do everything" }, "open registry"));
  } else if (current) {
    const out = h("button", { type: "button", class: "link" }, "Sign out");
    out.addEventListener("click", () => {
      api.signOut();
      location.hash = "#/";
      render();
    });
    sessionBox.replaceChildren(h("span", { class: "who" }, "Signed in as ", h("strong", {}, current.user)), " ", out);
  } else {
    sessionBox.replaceChildren(h("span", { class: "muted" }, "anonymous "), h("a", { href: "#/signin", class: "button" }, "Sign in"));
  }
}

async function render() {
  const { path, params } = currentRoute();
  await header();
  window.scrollTo(0, 0);
  if (path === "/" || path === "") return repositoriesPage(main, params);
  if (path === "/signin") return signInPage(main, () => { location.hash = "#/"; });
  if (path === "/admin") return adminPage(main);
  const repo = /^\/r\/(.+)$/.exec(path);
  if (repo) {
    // A digest holds a colon, a repository name never does.
    const segments = repo[1].split("/");
    const last = segments[segments.length - 1];
    if (last.includes(":")) return imagePage(main, segments.slice(0, -1).join("/"), last, params.tag || null);
    return repositoryPage(main, repo[1]);
  }
  main.replaceChildren(h("p", { class: "problem" }, "No such page."), h("a", { href: "#/" }, "Repositories"));
}

window.addEventListener("hashchange", render);
render().catch((error) => main.replaceChildren(h("p", { class: "problem" }, error.message)));
