"""The built-in synthetic benchmark: scene families with one-factor hard negatives (`scenes`), their captions
(`captions`), rendering to real video files (`render`) and the generator that writes videos and annotations in
VindLU's JSON format (`benchmark`; `python -m processing.synthetic --out DIR`)."""
