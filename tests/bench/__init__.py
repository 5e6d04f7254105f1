"""Tests of the benchmark suites in bench/."""
