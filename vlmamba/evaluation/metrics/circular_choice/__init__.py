# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
