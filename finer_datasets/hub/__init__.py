"""Getting data to and from the Hugging Face Hub: loading views, resolving a dataset argument,
releases as git tags, publishing.

    load.py      load_finer(): per-image rows and flat views (pairs, questions, positions, trl, sft)
    stream.py    stream_finer(): the same rows lazily from the shards with webdataset (nodes, workers, shuffle)
    resolve.py   a folder or Hub id -> a verified local folder + its provenance (what reports record)
    release.py   finer release: a commit + v<VERSION> tag per version, checked against the earlier ones
    versions.py  dataset versions in PEP 440 order (2.0.0 < 2.0.0+lab.1 < 2.0.1)
    diff.py      finer diff: what changed between two versions (folders, REPO@TAG, Hub ids)
    publish.py   finer publish: upload, check against the manifest, tag
    from_release.py  finer build compre_cap|docci --from-release: a build of the authors' released items
"""
