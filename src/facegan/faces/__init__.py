"""Face tooling, in one place: detection, dlib 5-point alignment, recognisers and the match rule.

- `faces.align`        the largest face dlib's HOG detector finds, aligned with 5 landmarks (the crop
                       dlib's recogniser expects); the dlib model files shipped by face-recognition-models
- `faces.detection`    dlib's HOG detector on upsampled images (face rate)
- `faces.recognisers`  the `Recogniser` protocol and the registry (`get_recogniser("dlib-resnet")`)
- `faces.match`        the match rule: a descriptor distance and the threshold below which it is one person
- `faces.dlib_resnet`  dlib's ResNet face recogniser ported to PyTorch (weights parsed by `faces.dlib_format`)

Nothing here reads image files or datasets: inputs are uint8 HWC / NHWC arrays. This is the only
package that imports dlib; `data` (alignment at prepare time), `metrics` (the "face" feature space)
and `privacy` (identity leakage) go through it.
"""
