"""The application: compiling pipelines, running them locally, summarising runs."""
