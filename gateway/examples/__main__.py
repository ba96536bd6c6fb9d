import sys

from gateway.examples import example_config

sys.stdout.write(example_config())
