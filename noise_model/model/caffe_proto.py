"""The minimal Caffe protobuf schema needed to read a `.caffemodel`, without Caffe.

A `.caffemodel` is a serialized `caffe.NetParameter`. Only the fields that carry layer
names, types and parameter blobs are declared here, with the field numbers of Caffe's
`src/caffe/proto/caffe.proto`:

  message BlobShape { repeated int64 dim = 1 [packed = true]; }
  message BlobProto {
    optional int32 num = 1; optional int32 channels = 2;    // legacy 4-D shape
    optional int32 height = 3; optional int32 width = 4;
    repeated float data = 5 [packed = true]; repeated float diff = 6 [packed = true];
    optional BlobShape shape = 7; repeated double double_data = 8 [packed = true];
  }
  message LayerParameter { optional string name = 1; optional string type = 2;
                           repeated BlobProto blobs = 7; }
  message V1LayerParameter { optional string name = 4; optional LayerType type = 5;
                             repeated BlobProto blobs = 6; }
  message NetParameter { optional string name = 1; repeated V1LayerParameter layers = 2;
                         repeated LayerParameter layer = 100; }

Every other field of a real file (layer parameters, bottoms and tops, learning-rate
multipliers, ...) is an unknown field to this schema and is skipped by the parser.
The message classes are built at import time with `descriptor_pb2` in a private
descriptor pool, so they never clash with another `caffe` package.
"""

from typing import Optional

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message as protobuf_message
from google.protobuf import message_factory

PACKAGE = "caffe"

# V1LayerParameter.LayerType (caffe.proto), for naming the types of legacy layers.
V1_LAYER_TYPES = {
    "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3,
    "CONTRASTIVE_LOSS": 37, "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6,
    "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7, "ELTWISE": 25, "EXP": 38, "FLATTEN": 8,
    "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11, "IMAGE_DATA": 12,
    "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29,
    "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34, "POOLING": 17, "POWER": 26, "RELU": 18,
    "SIGMOID": 19, "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36, "SOFTMAX": 20,
    "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33, "TANH": 23, "WINDOW_DATA": 24,
    "THRESHOLD": 31,
}

_F = descriptor_pb2.FieldDescriptorProto


def _field(message: descriptor_pb2.DescriptorProto, name: str, number: int, field_type: int,
           label: int = _F.LABEL_OPTIONAL, type_name: Optional[str] = None,
           packed: bool = False) -> descriptor_pb2.FieldDescriptorProto:
    field = message.field.add(name=name, number=number, type=field_type, label=label)
    if type_name is not None:
        field.type_name = "." + PACKAGE + "." + type_name
    if packed:
        field.options.packed = True
    return field


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto of the minimal schema above."""
    proto = descriptor_pb2.FileDescriptorProto(name="noise_model/caffe_minimal.proto",
                                               package=PACKAGE, syntax="proto2")
    repeated = _F.LABEL_REPEATED

    shape = proto.message_type.add(name="BlobShape")
    _field(shape, "dim", 1, _F.TYPE_INT64, repeated, packed=True)

    blob = proto.message_type.add(name="BlobProto")
    _field(blob, "num", 1, _F.TYPE_INT32)
    _field(blob, "channels", 2, _F.TYPE_INT32)
    _field(blob, "height", 3, _F.TYPE_INT32)
    _field(blob, "width", 4, _F.TYPE_INT32)
    _field(blob, "data", 5, _F.TYPE_FLOAT, repeated, packed=True)
    _field(blob, "diff", 6, _F.TYPE_FLOAT, repeated, packed=True)
    _field(blob, "shape", 7, _F.TYPE_MESSAGE, type_name="BlobShape")
    _field(blob, "double_data", 8, _F.TYPE_DOUBLE, repeated, packed=True)

    layer = proto.message_type.add(name="LayerParameter")
    _field(layer, "name", 1, _F.TYPE_STRING)
    _field(layer, "type", 2, _F.TYPE_STRING)
    _field(layer, "blobs", 7, _F.TYPE_MESSAGE, repeated, type_name="BlobProto")

    v1_layer = proto.message_type.add(name="V1LayerParameter")
    enum = v1_layer.enum_type.add(name="LayerType")
    for name, number in sorted(V1_LAYER_TYPES.items(), key=lambda item: item[1]):
        enum.value.add(name=name, number=number)
    _field(v1_layer, "name", 4, _F.TYPE_STRING)
    _field(v1_layer, "type", 5, _F.TYPE_ENUM, type_name="V1LayerParameter.LayerType")
    _field(v1_layer, "blobs", 6, _F.TYPE_MESSAGE, repeated, type_name="BlobProto")

    net = proto.message_type.add(name="NetParameter")
    _field(net, "name", 1, _F.TYPE_STRING)
    _field(net, "layers", 2, _F.TYPE_MESSAGE, repeated, type_name="V1LayerParameter")
    _field(net, "layer", 100, _F.TYPE_MESSAGE, repeated, type_name="LayerParameter")
    return proto


def _message_classes() -> dict[str, type[protobuf_message.Message]]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor())
    classes = {}
    for name in ("BlobShape", "BlobProto", "LayerParameter", "V1LayerParameter", "NetParameter"):
        descriptor = pool.FindMessageTypeByName(PACKAGE + "." + name)
        if hasattr(message_factory, "GetMessageClass"):
            classes[name] = message_factory.GetMessageClass(descriptor)
        else:  # protobuf < 4.22
            classes[name] = message_factory.MessageFactory(pool).GetPrototype(descriptor)
    return classes


_CLASSES = _message_classes()
BlobShape = _CLASSES["BlobShape"]
BlobProto = _CLASSES["BlobProto"]
LayerParameter = _CLASSES["LayerParameter"]
V1LayerParameter = _CLASSES["V1LayerParameter"]
NetParameter = _CLASSES["NetParameter"]


def v1_type_name(number: int) -> str:
    """The V1LayerParameter.LayerType name of an enum number (e.g. 4 → "CONVOLUTION")."""
    for name, value in V1_LAYER_TYPES.items():
        if value == number:
            return name
    return "UNKNOWN_%d" % number
