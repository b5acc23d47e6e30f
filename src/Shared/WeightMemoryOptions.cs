using System.CommandLine;
using ParetoQ.Runtime.Format;

namespace ParetoQ.CommandLine;

/// <summary>llama.cpp's <c>--mmap</c> / <c>--no-mmap</c>, as every program that loads a model takes them.</summary>
internal sealed class WeightMemoryOptions
{
    public Option<bool> Mmap { get; } = new("--mmap")
    {
        Description = "Map the weights from the page cache (instant open, shared with other processes) even where " +
            "the default reads them into huge-page memory",
    };

    public Option<bool> NoMmap { get; } = new("--no-mmap")
    {
        Description = "Read the weights into huge-page memory (a slower open, faster decode) even where the default " +
            "maps them. Default: read on Linux with transparent huge pages for models of 32 MiB and more, else map",
    };

    public WeightMemory Get(ParseResult parse) => (parse.GetValue(Mmap), parse.GetValue(NoMmap)) switch
    {
        (true, true) => throw new UsageException("give --mmap or --no-mmap, not both"),
        (true, false) => WeightMemory.Mapped,
        (false, true) => WeightMemory.Resident,
        _ => WeightMemory.Auto,
    };
}
