"""The churn soak (``make soak``): run.py is a script (it soaks the checkout given with ``--src``, its lab
built from tests/bench/lab.py), ccgsoak_probe.py a module it can load into collectd next to the plugin
(``--probe``); tests/e2e/test_soak.py runs it briefly."""
