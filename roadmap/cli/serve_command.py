"""`roadmap serve`: the chat page in a browser, over steps 3, 4 and 6."""

from __future__ import annotations

from shared.core.commands import warn


def cmd_serve(args) -> int:
    from functools import partial

    from roadmap.web.server import (
        Backend,
        create_app,
        is_loopback,
        run_server,
        socket_for,
        trusted_hosts,
        url_of,
    )

    hosts = trusted_hosts(args.host, args.allow_host)
    # Bind first: a port in use or a bad host is one line, before the model loads.
    with socket_for(args.host, args.port) as sock:
        if not is_loopback(args.host):
            warn(f"the page has no authentication: anyone who can reach {url_of(sock)} can chat, use the tools and "
                 f"read every stored conversation; serve on 127.0.0.1 unless you trust this network. Accepted host "
                 f"names: {', '.join(hosts)} (add one with --allow-host NAME)")
        from shared.memory.store import open_memory
        from shared.models.registry import choose, get_chat_model
        from shared.rag.knowledge_base import open_retriever

        model = get_chat_model(args.model, max_tokens=args.max_tokens, temperature=0.0)
        # The documents are indexed on the first "ask docs" or agent request, not at start-up.
        retriever = partial(open_retriever, args.docs, args.embeddings, args.k, args.mode, on_warning=warn,
                            store=args.store)
        with Backend(model, open_memory(args.db), retriever) as backend:
            print(f"serving the roadmap chat on {url_of(sock)} (model {choose(args.model).spec}, "
                  f"memory {backend.memory.where}); Ctrl-C stops", flush=True)
            run_server(create_app(backend, allowed_hosts=hosts), sock)
    print("stopped")
    return 0

