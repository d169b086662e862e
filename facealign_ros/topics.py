"""Topic names shared by the node, replay, the synthetic engine and the training data.

Inputs are the defaults (remappable in the node, flags in ``facealign replay``); ground-truth
topics are what ``facealign synth`` and ``facealign label`` write and evaluation reads.
"""

EVENTS = "/event_camera/events"
IMAGE = "/camera/image_raw"
CAMERA_INFO = "/camera/camera_info"

GT_LANDMARKS = "/facealign/gt/landmarks"
GT_HEAD_POSE = "/facealign/gt/head_pose"
GT_LANDMARKS_HF = "/facealign/gt/landmarks_hf"
SYNTH_METADATA = "/facealign/synth/metadata"

LABEL_QUALITY = "/facealign/label/quality"
LABEL_METADATA = "/facealign/label/metadata"
