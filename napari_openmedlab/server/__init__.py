"""``openmedlab serve``: one GPU box for a department.

``sessions`` and ``models`` are headless (leases, capacity, one shared network per model, a lock
around the accelerator); ``app`` puts FastAPI in front of them. The client is
:class:`napari_openmedlab.engines.remote.RemoteEngine`; the wire format is
:mod:`napari_openmedlab.engines.wire`.
"""
