"""The dashboard's page for pausing and resuming queues, and its link in rq-dashboard's navbar.

rq-dashboard 0.9.0 knows nothing of offload's pause, so this is a small page of offload's own in the
same Flask app: served behind the same gate (service/web/dashboard.py), so its buttons need the
dashboard's credentials, are refused from another site's pages (a form POST from this page names
this site in its Origin) and in read-only mode. Each button is a plain form: no script, and the
answer is a redirect back to the page (POST, then GET), which a reload does not repeat.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from functools import partial

from flask import Flask, Response, redirect, url_for
from flask.typing import ResponseReturnValue
from redis import Redis

from service.store.counts import queue_views
from service.store.pause import pause, resume

PAGE_PATH = "/offload/queues"
# Where rq-dashboard's navbar lists its pages: the link to this one goes first in that list.
NAVBAR_LIST = '<ul class="navbar-nav mr-auto">'


def install_pause_page(app: Flask, connection: Redis, *, read_only: bool) -> None:
    """Add the page, its two actions, and a link to it on every rq-dashboard page."""
    app.add_url_rule(PAGE_PATH, "offload_queues", partial(_page, connection, read_only))
    for action, act in (("pause", pause), ("resume", resume)):
        app.add_url_rule(
            f"{PAGE_PATH}/<name>/{action}",
            f"offload_{action}_queue",
            partial(_act, act, connection),
            methods=["POST"],
        )
    app.after_request(_link_from_navbar)


def _act(act: Callable[[Redis, str], bool], connection: Redis, name: str) -> ResponseReturnValue:
    act(connection, name)  # an unknown name raises UnknownQueueError: a 404 (dashboard_app.py)
    return redirect(url_for("offload_queues"), code=303)


def _page(connection: Redis, read_only: bool) -> ResponseReturnValue:
    rows = []
    for view in queue_views(connection):
        name = html.escape(view.name)
        state = "paused" if view.paused else "running"
        action = "resume" if view.paused else "pause"
        button = (
            ""
            if read_only
            else f'<form method="post" action="{url_for(f"offload_{action}_queue", name=view.name)}">'
            f'<button type="submit" class="btn btn-sm btn-outline-primary" data-role="{action}-queue">'
            f"{action.capitalize()}</button></form>"
        )
        rows.append(
            f'<tr data-role="queue" data-queue="{name}"><td>{name}</td>'
            f'<td data-role="state">{state}</td><td>{view.counts["queued"]}</td>'
            f"<td>{view.counts['started']}</td><td>{button}</td></tr>"
        )
    css = url_for("rq_dashboard.static", filename="css/bootstrap.min.css")
    back = url_for("rq_dashboard.queues_overview", instance_number=0)
    body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Pause queues · offload</title>
<link rel="stylesheet" href="{css}"></head>
<body><div class="container">
<h1 class="h3 my-3">Pause queues</h1>
<p>A paused queue still accepts jobs; no worker takes one from it until it is resumed. A job
already running goes on. <a href="{back}">Back to the dashboard</a></p>
<table id="offload-queues" class="table table-sm">
<thead><tr><th>Queue</th><th>State</th><th>Queued</th><th>Started</th><th></th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
</div></body></html>"""
    return body, {"Cache-Control": "no-store", "Content-Type": "text/html; charset=utf-8"}


def _link_from_navbar(response: Response) -> Response:
    """rq-dashboard's pages, with a link to this one in their navbar."""
    if response.mimetype != "text/html" or response.direct_passthrough:
        return response
    page = response.get_data(as_text=True)
    if NAVBAR_LIST in page:
        href = url_for("offload_queues")
        link = f'<li class="nav-item"><a href="{href}" class="nav-link">Pause queues</a></li>'
        response.set_data(page.replace(NAVBAR_LIST, NAVBAR_LIST + link, 1))
    return response
