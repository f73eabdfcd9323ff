"""Dock widgets for napari: Analyze (classify and explain) and Review (record and queue).

Kept empty on purpose: napari imports ``widgets.analyze`` / ``widgets.review`` through the
manifest, and importing this package must not pull in Qt, torch or timm.
"""
