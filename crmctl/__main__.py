from crmctl.app import main

main()
