"""mlspec: a production ML system declared in one reviewed file."""

__version__ = "0.1.0"
