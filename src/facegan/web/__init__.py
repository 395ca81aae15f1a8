"""The web UI (`facegan serve`): gradio tabs over the same Python API as the CLI, with no logic of its own.

paths.py    the one door from a request to files: names under --runs / --data only
uploads.py  uploaded photos, checked as `data prepare` checks files, with a size cap
actions.py  what each tab does, as plain functions (no gradio)
app.py      the gradio layout, wiring tabs to actions; errors as one line
server.py   settings, the host/auth rule, the queue and launch
"""
