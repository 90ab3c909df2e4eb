# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Runs that train and compare models end to end: the offline quickstart, the in-context retrieval experiment and
the remote-code demo."""
