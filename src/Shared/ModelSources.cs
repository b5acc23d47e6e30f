using ParetoQ.Runtime.Conversion;
using ParetoQ.Runtime.Interchange;

namespace ParetoQ.CommandLine;

/// <summary>
/// Every model source the programs convert, picked by <see cref="SourceCheckpoint.KindOf"/>: a Hugging Face
/// directory, a GGUF, a .pq (requantized) or a llama2.c checkpoint, which alone takes --tokenizer (its tokenizer.bin).
/// paretoq-convert and paretoq-train import share it, so both read the same sources with the same usage errors.
/// </summary>
internal static class ModelSources
{
    public static ConversionReport Convert(string input, string? tokenizer, string output, ConversionOptions options)
    {
        var kind = SourceCheckpoint.KindOf(input);
        if (tokenizer is not null && kind != SourceKind.Llama2c)
            throw new UsageException($"--tokenizer is for a llama2.c checkpoint; {OwnTokenizer(kind)}");
        return kind switch
        {
            SourceKind.HuggingFaceDirectory => HfConverter.Convert(input, output, options),
            SourceKind.Gguf => HfConverter.ConvertGguf(input, output, options),
            SourceKind.Pq => HfConverter.ConvertPq(input, output, options),
            _ => tokenizer is null
                ? throw new UsageException($"{input} is a file, so it is read as a llama2.c checkpoint, which needs " +
                    "--tokenizer tokenizer.bin (a Hugging Face checkpoint is a directory)")
                : HfConverter.ConvertLlama2c(input, tokenizer, output, options),
        };
    }

    private static string OwnTokenizer(SourceKind kind) => kind switch
    {
        SourceKind.HuggingFaceDirectory => "a Hugging Face directory holds its own tokenizer files",
        SourceKind.Gguf => "a GGUF file holds its own vocabulary",
        _ => "a .pq file holds its own tokenizer",
    };
}
