"""`python -m onnxcam ...` runs the command line (the same as the `onnxcam` script)."""
import sys

from .cli import main

sys.exit(main())
