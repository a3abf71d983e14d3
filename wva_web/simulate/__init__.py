"""Policy comparisons: runs of `fleetsim.compare` started from the console."""
