"""The robustness suite needs root (network namespaces): without it the tests fail with the
harness's clear error rather than skip, so that CI cannot pass without running them."""
