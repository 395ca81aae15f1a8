"""Face tooling, in one place: detection, dlib 5-point alignment, recognisers and the match rule.

- `faces.align`       the largest face dlib's HOG detector finds, aligned with 5 landmarks (the crop
                      dlib's recogniser expects); the dlib model files shipped by face-recognition-models
- `faces.detection`   dlib's HOG detector on upsampled images (face rate)
- `faces.dlib_resnet` dlib's ResNet face recogniser ported to PyTorch (weights parsed by `faces.dlib_format`)

Nothing here reads image files or datasets: inputs are uint8 HWC / NHWC arrays.
"""
