"""Example data that installs offline, built by `tandem corpus`, `tandem ecommerce` and `tandem tasks`.

Not part of the data pipeline (tandem.data reads whatever domains a config names); these builders only write
domains to disk for the demo, the tests' scale and the benchmarks.
"""
