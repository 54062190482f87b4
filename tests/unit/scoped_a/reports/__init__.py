"""A subpackage: ``job_packages`` takes the submodules of a package too."""
