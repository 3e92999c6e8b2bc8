"""The review gallery (journey J4): published notebooks pinned to their environment, commit
and data; versions, visibility, reviewer links, rendering, review threads, reproduction.

It runs as the hub-managed service ``gallery``; the modules here are its parts, one
concern each (docs/gallery.md, docs/architecture.md).
"""
