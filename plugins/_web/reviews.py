"""待处理 beyond hand-offs: the items every plugin lists for review, each settled by the
command it declares (or its plain counterpart: reject for accept, post_skip for post_done),
run as chat and the CLI run it. Friend requests and posts handed to staff are staff work;
anything else (unknown deliveries, campaigns, referrals) needs an operator."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from plugins._web import kernel
from plugins._web.app import page, web_of

STAFF_KINDS = frozenset({"friend_request", "staff_post"})
# op -> the command, for the kinds whose page has more than the declared command.
_OTHER = {
    ("friend_request", "reject"): "reject",
    ("staff_post", "skip"): "post_skip",
}
UNKNOWN_OUTCOMES = ("sent", "resend", "skip")


def _who(request: Request) -> Any:
    user = request.state.session.user
    return kernel.operator(user.id, user.name)


async def sections(request: Request) -> dict[str, Any]:
    """The 待处理 page's review part: items by kind, with what staff need beside them."""
    web = web_of(request)
    items = await kernel.review_items(web.ctx)
    posts = [i for i in items if i["kind"] == "staff_post"]
    for post in posts:
        answers = await kernel.run_command(web.ctx, _who(request), "upcoming_posts", post["detail"])
        post["text"] = "\n".join(text for _key, text in answers)
        post["pictures"] = len(kernel.post_images(web.ctx, post["detail"]))
    requests = [i for i in items if i["kind"] == "friend_request"]
    listing = ""
    if requests and kernel.has_command(web.ctx, "friend_requests"):
        answers = await kernel.run_command(web.ctx, _who(request), "friend_requests")
        listing = "\n".join(text for _key, text in answers)
    return {
        "friend_requests": requests,
        "friend_listing": listing,
        "staff_posts": posts,
        "unknowns": [i for i in items if i["kind"] == kernel.UNKNOWN_DELIVERY],
        "others": [i for i in items if i["kind"] not in STAFF_KINDS | {kernel.UNKNOWN_DELIVERY}],
    }


@page("staff", post=True)
async def settle(request: Request) -> Response:
    web = web_of(request)
    form = request.state.form
    plugin, kind, ref = (str(form.get(k, ""))[:300] for k in ("plugin", "kind", "ref"))
    op = str(form.get("op", ""))[:20]
    items = await kernel.review_items(web.ctx)
    item = next(
        (i for i in items if (i["plugin"], i["kind"], i["ref"]) == (plugin, kind, ref)), None
    )
    if item is None:
        return RedirectResponse("/inbox?m=gone", status_code=303)
    if kind not in STAFF_KINDS and not request.state.session.user.can("operator"):
        web.ctx.record("denied", user=request.state.session.user.id, route="/inbox/settle")
        return web.render(request, "error.html", 403, code="forbidden")
    who = _who(request)
    if kind == kernel.UNKNOWN_DELIVERY:
        if op not in UNKNOWN_OUTCOMES:
            return RedirectResponse("/inbox?m=gone", status_code=303)
        texts = await kernel.resolve_unknown(web.ctx, who, ref, op)
    else:
        command = _OTHER.get((kind, op)) or (item["command"] if op == "do" else "")
        if not command or not kernel.has_command(web.ctx, command):
            return RedirectResponse("/inbox?m=gone", status_code=303)
        answers = await kernel.run_command(web.ctx, who, command, *item["args"])
        texts = [text for _key, text in answers]
    web.ctx.record(
        "audit", user=request.state.session.user.id, action=f"review_{kind}_{op}", ref=ref[:64]
    )
    return web.render(request, "settled.html", texts=texts)


@page("viewer")
async def picture(request: Request) -> Response:
    """One picture of a post handed to staff, as a download."""
    web = web_of(request)
    post_id = request.query_params.get("post", "")[:100]
    number = request.query_params.get("n", "")
    found = kernel.post_images(web.ctx, post_id) if post_id else []
    if not number.isdigit() or not 0 <= int(number) < len(found):
        return Response(status_code=404)
    path = found[int(number)]
    return FileResponse(path, filename=path.name)


def routes() -> list[BaseRoute]:
    return [
        Route("/inbox/settle", settle, methods=["POST"]),
        Route("/inbox/picture", picture),
    ]
