"""Prompts in git (`manage.py prompts import|export`): ``prompt_files`` is the YAML format of a
prompt file (pure), ``repo`` reads the files of a commit with the `git` command, and ``sync``
publishes them as versions, or writes the production versions out as files."""
