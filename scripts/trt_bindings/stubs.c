/* Stand-ins for the C entry points the TensorRT Python bindings import from libnvinfer,
 * libnvinfer_plugin and libnvonnxparser (list from `nm -D --undefined-only tensorrt.so`, 10.x and 11.x).
 * They let the real bindings module import on a machine without TensorRT's libraries, so its enums,
 * classes and pybind11 signatures can be read. Every factory returns NULL: nothing can be built or run,
 * and the bindings raise TypeError ("factory function returned nullptr") just as they do when TensorRT
 * cannot initialise CUDA. Compile once per library with -DLIB_NVINFER, -DLIB_PLUGIN or -DLIB_PARSER. */
#include <stdbool.h>
#include <stddef.h>

#if defined(LIB_NVINFER)
void *createInferBuilder_INTERNAL(void *logger, int version) { return NULL; }
void *createInferRuntime_INTERNAL(void *logger, int version) { return NULL; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version) { return NULL; }
void *getPluginRegistry(void) { return NULL; }
void *getBuilderPluginRegistry(int capability) { return NULL; }
#elif defined(LIB_PLUGIN)
bool initLibNvInferPlugins(void *logger, const char *lib_namespace) { return false; }
#elif defined(LIB_PARSER)
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version) { return NULL; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version) { return NULL; }
/* NV_ONNX_PARSER_MAJOR * 10000 + MINOR * 100 + PATCH, as NvOnnxParser.h defines the version */
int getNvOnnxParserVersion(void) { return PARSER_VERSION; }
#else
#error "define LIB_NVINFER, LIB_PLUGIN or LIB_PARSER"
#endif
