"""Issue 12's peer comparison: offload beside Celery, Dramatiq, arq, SAQ, taskiq and raw RQ (run.py).

One module per peer (its pins and worker settings), their apps in apps/ (run by each peer's own
venv, never imported here), offload's side in offload.py.
"""
