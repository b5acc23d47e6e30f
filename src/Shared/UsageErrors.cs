using System.CommandLine;

namespace ParetoQ.CommandLine;

/// <summary>How every program reports a command line it could not parse (linked into each program's project).</summary>
internal static class UsageErrors
{
    /// <summary>The exit code of a usage error, apart from 1 for a run that failed.</summary>
    public const int ExitCode = 2;

    /// <summary>Prints the parse errors as one line, "program: messages (see --help)"; false when there are
    /// none.</summary>
    public static bool Report(ParseResult parsed, string program)
    {
        if (parsed.Errors.Count == 0) return false;
        // All of them ("Required command was not provided." alone would hide the misspelt command), on one line:
        // System.CommandLine's messages can span lines ("Must be one of:\n\t'int8'…").
        string message = string.Join(' ', parsed.Errors.Select(e => e.Message).Distinct()
            .SelectMany(m => m.Split((char[])['\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries)));
        Console.Error.WriteLine($"{program}: {message} (see --help)");
        return true;
    }
}
