using System.Runtime.InteropServices;
using ParetoQ.Abi;

namespace ParetoQ.Interop;

/// <summary>The exports of native/include/paretoq.h, one to one. "paretoq" resolves to libparetoq.so beside the
/// app, or to its AVX-512 build where the CPU runs it (<see cref="LibraryVariant"/>).</summary>
internal static unsafe partial class NativeMethods
{
    private const string Library = "paretoq";

    static NativeMethods() => LibraryVariant.Install();

    [LibraryImport(Library, EntryPoint = "pq_abi_version")] public static partial uint AbiVersion();
    [LibraryImport(Library, EntryPoint = "pq_version_string")] public static partial byte* VersionString();
    [LibraryImport(Library, EntryPoint = "pq_last_error")] public static partial byte* LastError();

    [LibraryImport(Library,
        EntryPoint = "pq_model_default_params")] public static partial PqModelParams ModelDefaultParams();
    [LibraryImport(Library, EntryPoint = "pq_model_load", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int ModelLoad(string path, PqModelParams* parameters, out ModelHandle model);
    [LibraryImport(Library, EntryPoint = "pq_model_free")] public static partial void ModelFree(nint model);
    [LibraryImport(Library, EntryPoint = "pq_model_get_info")] public static partial int ModelGetInfo(ModelHandle model,
        PqModelInfo* info);

    [LibraryImport(Library,
        EntryPoint = "pq_context_default_params")] public static partial PqContextParams ContextDefaultParams();
    [LibraryImport(Library, EntryPoint = "pq_context_new")]
    public static partial int ContextNew(ModelHandle model, PqContextParams* parameters, out ContextHandle context);
    [LibraryImport(Library, EntryPoint = "pq_context_free")] public static partial void ContextFree(nint context);
    [LibraryImport(Library,
        EntryPoint = "pq_context_reset")] public static partial int ContextReset(ContextHandle context);
    [LibraryImport(Library,
        EntryPoint = "pq_context_position")] public static partial int ContextPosition(ContextHandle context);
    [LibraryImport(Library,
        EntryPoint = "pq_context_length")] public static partial int ContextLength(ContextHandle context);

    [LibraryImport(Library, EntryPoint = "pq_tokenize")]
    public static partial int Tokenize(ModelHandle model, byte* text, int textLength, int addBos, int* tokens,
        int capacity);
    [LibraryImport(Library, EntryPoint = "pq_detokenize")]
    public static partial int Detokenize(ModelHandle model, int* tokens, int count, byte* text, int capacity);

    [LibraryImport(Library, EntryPoint = "pq_decode")] public static partial int Decode(ContextHandle context,
        int* tokens, int count);
    [LibraryImport(Library, EntryPoint = "pq_get_logits")] public static partial float* GetLogits(ContextHandle context,
        int* count);
    [LibraryImport(Library,
        EntryPoint = "pq_sampler_default_params")] public static partial PqSamplerParams SamplerDefaultParams();
    [LibraryImport(Library, EntryPoint = "pq_sample")] public static partial int Sample(ContextHandle context,
        PqSamplerParams* parameters);
    [LibraryImport(Library, EntryPoint = "pq_generate")]
    public static partial int Generate(ContextHandle context, byte* prompt, int promptLength,
        PqSamplerParams* parameters, int maxTokens, delegate* unmanaged<byte*, int, void*, int> callback,
            void* userData, PqGenerationStats* stats);
}

/// <summary>A pq_model*; freeing it releases the handle (contexts keep the weights mapped until they are
/// freed).</summary>
public sealed class ModelHandle() : SafeHandle(0, ownsHandle: true)
{
    public override bool IsInvalid => handle == 0;
    protected override bool ReleaseHandle()
    {
        NativeMethods.ModelFree(handle);
        return true;
    }
}

/// <summary>A pq_context*.</summary>
public sealed class ContextHandle() : SafeHandle(0, ownsHandle: true)
{
    public override bool IsInvalid => handle == 0;
    protected override bool ReleaseHandle()
    {
        NativeMethods.ContextFree(handle);
        return true;
    }
}
