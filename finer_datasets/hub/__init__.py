"""Getting data to and from the Hugging Face Hub: loading views, releases as git tags, publishing.

    load.py      load_finer(): per-image rows and flat views (pairs, questions, trl)
    release.py   finer release: a commit + v<VERSION> tag per version
    publish.py   finer publish: upload, check against the manifest, tag
"""
