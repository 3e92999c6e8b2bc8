"""The JupyterLab side of publishing to the gallery: the "Publish to the gallery…" command.

A hand-written federated extension, as ``cull_notice``'s, written into the server's runtime
folder by ``gallery_publish``. It takes JupyterLab's dialog (``showDialog``), command
palette and main menu from JupyterLab's shared modules (the share scope JupyterLab hands
``init``), adds the command to the File menu and the palette, enabled while a notebook is
the current tab, and shows a form: title, abstract, tags, who sees it, the files beside the
notebook to include, and "a new version of entry N" once the notebook was published from
this browser. It POSTs to ``kioskhub/gallery/publish`` and shows "Publishing…", then the
entry's link or the error, as notifications. Every text goes into the page as text
(``textContent``, notifications), never as HTML.
"""

from __future__ import annotations

from kioskhub.extensions.cull_notice import SERVER_REQUEST_JS, lab_package

LAB_EXTENSION = "kioskhub-gallery-publish"
COMMAND = "kioskhub-gallery:publish"
COMMAND_LABEL = "Publish to the gallery…"

PACKAGE_JSON = lab_package(LAB_EXTENSION, "Publishes the open notebook to the review gallery.")

REMOTE_ENTRY = (
    """\
(function () {
  "use strict";
"""
    + SERVER_REQUEST_JS
    + """\
  const COMMAND = "kioskhub-gallery:publish";
  const OPEN = "kioskhub-gallery:open-entry";
  let shared = null;
  async function load(name) {
    const versions = (shared && shared[name]) || {};
    const keys = Object.keys(versions);
    const key = keys.find((v) => versions[v].loaded) || keys[0];
    if (!key) throw new Error(name + " is not among JupyterLab's shared modules");
    return (await versions[key].get())();
  }
  function element(tag, props, children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const child of children || []) node.append(child);
    return node;
  }
  function field(label, input) {
    const row = element("label", { className: "kh-gallery-field" }, [label, input]);
    row.style.cssText = "display:flex;flex-direction:column;margin-bottom:0.6em";
    return row;
  }
  function currentNotebook(app) {
    const widget = app.shell.currentWidget;
    const path = widget && widget.context && widget.context.path;
    return path && path.endsWith(".ipynb") ? { widget, path } : null;
  }
  function entryKey(path) {
    return "kioskhub-gallery:entry:" + location.pathname.split("/lab")[0] + ":" + path;
  }
  // The form: a lumino Widget with getValue(), as showDialog wants its body.
  async function publishForm(app, Widget, path) {
    const folder = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
    const listing = await app.serviceManager.contents.get(folder, { content: true });
    const beside = listing.content
      .filter((item) => item.type === "file" && item.path !== path && !item.name.startsWith("."))
      .map((item) => item.name)
      .sort();
    const name = path.slice(path.lastIndexOf("/") + 1).replace(/[.]ipynb$/, "");
    const title = element("input", { type: "text", name: "title", value: name });
    const abstract = element("textarea", { name: "abstract", rows: 4 });
    const tags = element("input", { type: "text", name: "tags", placeholder: "fit, beamline" });
    const visibility = element("select", { name: "visibility" }, [
      element("option", { value: "draft", textContent: "Only me (draft)" }),
      element("option", { value: "site", textContent: "Everyone on the site" }),
      element("option", { value: "group", textContent: "A group of mine" }),
    ]);
    const group = element("input", { type: "text", name: "group", placeholder: "group name" });
    const known = window.localStorage.getItem(entryKey(path));
    const asVersion = element("input", { type: "checkbox", name: "as-version", checked: !!known });
    const entry = element("input", { type: "number", name: "entry", min: 1, value: known || "" });
    const boxes = beside.map((file) =>
      element("input", { type: "checkbox", name: "file", value: file }));
    const files = element("fieldset", { className: "kh-gallery-files" }, [
      element("legend", { textContent: "Files beside the notebook to include" }),
      ...(beside.length ? [] : [element("div", { textContent: "(none)" })]),
      ...boxes.map((box) => element("label", { style: "display:block" }, [box, " " + box.value])),
    ]);
    files.style.cssText = "max-height:12em;overflow:auto";
    const node = element("div", { className: "kh-gallery-publish-form" }, [
      field("Title", title),
      field("Abstract", abstract),
      field("Tags (words, separated by commas)", tags),
      field("Who sees it", visibility),
      field("Group (for \\"A group of mine\\")", group),
      element("label", {}, [asVersion, " A new version of my entry number ", entry]),
      files,
    ]);
    const widget = new Widget({ node });
    widget.getValue = () => ({
      path,
      title: title.value,
      abstract: abstract.value,
      tags: tags.value.split(/[,\\s]+/).filter((t) => t),
      visibility: visibility.value === "group" ? "group:" + group.value.trim() : visibility.value,
      files: boxes.filter((box) => box.checked).map((box) => box.value),
      entry: asVersion.checked && entry.value ? Number(entry.value) : null,
    });
    return widget;
  }
  async function publish(app, request) {
    const config = JSON.parse(
      document.getElementById("jupyter-config-data").textContent || "{}");
    const url = (config.baseUrl || "/") + "kioskhub/gallery/publish";
    const progress = await app.commands.execute("apputils:notify", {
      message: "Publishing " + request.path + " to the gallery…",
      type: "in-progress",
      options: { autoClose: false, data: { kioskhub: "gallery-publish" } },
    });
    let reply = null;
    let answer = null;
    try {
      reply = await serverRequest(app, url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(request),
      });
      answer = await reply.json();
    } catch (error) {
      answer = { message: "Your server did not answer: " + String(error) };
    }
    if (reply && reply.ok) {
      window.localStorage.setItem(entryKey(request.path), String(answer.entry));
      const notes = (answer.notes || []).join(" ");
      await app.commands.execute("apputils:update-notification", {
        id: progress,
        message: "Published " + request.path + " as gallery entry " + answer.entry +
          ", version " + answer.version + ": " + answer.url + (notes ? " " + notes : ""),
        type: "success",
        // update-notification takes these beside the message, not under "options".
        autoClose: false,
        actions: [{ label: "Open in the gallery", commandId: OPEN, args: { url: answer.url } }],
        data: { kioskhub: "gallery-publish", url: answer.url },
      });
    } else {
      await app.commands.execute("apputils:update-notification", {
        id: progress,
        message: "Not published: " + ((answer && answer.message) || "the server answered " +
          (reply ? reply.status : "nothing")),
        type: "error",
        autoClose: false,
        data: { kioskhub: "gallery-publish" },
      });
    }
  }
  const plugin = {
    id: "kioskhub-gallery-publish:plugin",
    description: "Publishes the open notebook to the review gallery.",
    autoStart: true,
    optional: [],
    activate: (app, palette, mainMenu) => {
      app.commands.addCommand(OPEN, {
        label: "Open in the gallery",
        execute: (args) => {
          const url = String(args.url || "");
          if (url.startsWith("/")) window.open(url, "_blank", "noopener");
        },
      });
      app.commands.addCommand(COMMAND, {
        label: "Publish to the gallery…",
        caption: "Publish this notebook, pinned to its environment, commit and data",
        isEnabled: () => currentNotebook(app) !== null,
        execute: async () => {
          const current = currentNotebook(app);
          if (current === null) return;
          const [apputils, widgets] = await Promise.all(
            [load("@jupyterlab/apputils"), load("@lumino/widgets")]);
          if (current.widget.context.model.dirty) await current.widget.context.save();
          const body = await publishForm(app, widgets.Widget, current.path);
          const result = await apputils.showDialog({
            title: "Publish " + current.path + " to the gallery",
            body,
            buttons: [apputils.Dialog.cancelButton(),
              apputils.Dialog.okButton({ label: "Publish" })],
          });
          if (result.button.accept) await publish(app, result.value);
        },
      });
      if (app.shell.currentChanged) {
        app.shell.currentChanged.connect(() => app.commands.notifyCommandChanged(COMMAND));
      }
      if (palette) palette.addItem({ command: COMMAND, category: "Notebook Operations" });
      if (mainMenu) mainMenu.fileMenu.addGroup([{ command: COMMAND }], 40);
    },
  };
  window._JUPYTERLAB = window._JUPYTERLAB || {};
  window._JUPYTERLAB["kioskhub-gallery-publish"] = {
    init: (scope) => {
      shared = scope;
      return Promise.resolve();
    },
    get: async () => {
      try {
        const [apputils, mainmenu] = await Promise.all(
          [load("@jupyterlab/apputils"), load("@jupyterlab/mainmenu")]);
        plugin.optional = [apputils.ICommandPalette, mainmenu.IMainMenu];
      } catch (error) {
        console.warn("kioskhub-gallery-publish: no palette or menu:", error);
      }
      return () => ({ __esModule: true, default: plugin });
    },
  };
})();
"""
)
